"""Dataset knowledge: class tables, band orders and resolutions of the benchmarks."""
