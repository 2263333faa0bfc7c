"""Tiling geometry, as properties over all sizes, tiles and overlaps."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aerialseg.tiling import BLENDS, axis_spans, axis_weights, plan_tiles


@st.composite
def axes(draw, max_length=3000):
    tile = draw(st.integers(1, 600))
    overlap = draw(st.integers(0, tile - 1))
    length = draw(st.integers(1, max_length))
    align = draw(st.sampled_from([1, 32]))
    return length, tile, overlap, align


@settings(max_examples=400, deadline=None)
@given(axes())
def test_spans_stay_in_bounds_cover_everything_and_share_one_size(axis):
    length, tile, overlap, align = axis
    spans = axis_spans(length, tile, overlap, align)
    if align > 1 and (tile - overlap) // align >= 2:
        assert all(start % align == 0 for start, _ in spans[:-1])  # on the network's grid
    covered = np.zeros(length, dtype=int)
    for start, size in spans:
        assert 0 <= start and start + size <= length
        assert size == min(tile, length)
        covered[start : start + size] += 1
    assert covered.min() >= 1
    starts = [s for s, _ in spans]
    assert starts == sorted(set(starts))  # strictly increasing: no duplicate work
    for (a, size), (b, _) in pairwise(spans):
        assert a + size - b >= overlap  # neighbours share at least the requested overlap


@settings(max_examples=400, deadline=None)
@given(axes(), st.sampled_from(BLENDS))
def test_axis_weights_sum_to_one_wherever_at_most_two_tiles_meet(axis, blend):
    length, tile, overlap, align = axis
    spans = axis_spans(length, tile, overlap, align)
    total = np.zeros(length)
    count = np.zeros(length, dtype=int)
    for i, (start, size) in enumerate(spans):
        w = axis_weights(spans, i, blend)
        assert w.shape == (size,)
        assert ((w >= 0) & (w <= 1)).all()
        if blend != "center":
            assert (w > 0).all()  # no covered pixel is dropped by its tile
        total[start : start + size] += w
        count[start : start + size] += 1
    assert (total > 0).all()  # every pixel's normalised weights sum to one
    if blend == "center":
        np.testing.assert_array_equal(total, 1.0)  # exactly one owner per pixel
    else:
        two = count <= 2
        np.testing.assert_allclose(total[two], 1.0, atol=1e-6)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 300), st.integers(1, 300), st.integers(1, 128), st.data(), st.sampled_from(BLENDS))
def test_plan_windows_cover_the_raster_with_positive_weights(height, width, tile, data, blend):
    overlap = data.draw(st.integers(0, tile - 1))
    plan = plan_tiles(height, width, tile, overlap, blend)
    total = np.zeros((height, width))
    previous = (-1, -1)
    for rows in plan.tile_rows():
        for window, i, j in rows:
            assert (window.row_off, window.col_off) > previous  # strip order
            previous = (window.row_off, window.col_off)
            assert (window.height, window.width) == plan.tile_shape
            assert window.row_off + window.height <= height and window.col_off + window.width <= width
            total[window.as_slices()] += plan.weights(i, j)
    assert (total > 0).all()
    assert len(plan.windows()) == len(plan)


def test_one_pixel_raster_is_one_window():
    plan = plan_tiles(1, 1, 512, 64)
    assert [(w.row_off, w.col_off, w.height, w.width) for w in plan.windows()] == [(0, 0, 1, 1)]
    assert plan.weights(0, 0).tolist() == [[1.0]]


def test_tiles_are_spread_evenly_to_the_edge_not_padded():
    assert axis_spans(1000, 512, 64) == [(0, 512), (244, 512), (488, 512)]
    assert axis_spans(1000, 512, 64, align=32) == [(0, 512), (256, 512), (488, 512)]
    assert axis_spans(960, 512, 64) == [(0, 512), (448, 512)]
    spans = axis_spans(16384, 512, 64, align=32)
    assert len(spans) == 37  # as many tiles as a plain 448-pixel stride needs
    overlaps = {a + 512 - b for (a, _), (b, _) in pairwise(spans)}
    assert min(overlaps) >= 64 and max(overlaps) <= 96  # nearly equal: none near a whole tile


def test_invalid_numbers_are_refused():
    with pytest.raises(ValueError, match="overlap < tile"):
        plan_tiles(100, 100, 64, 64)
    with pytest.raises(ValueError, match="blend"):
        plan_tiles(100, 100, 64, 8, "gaussian")
