"""The command line: a thin Typer layer that parses, calls the Python API and renders results."""
