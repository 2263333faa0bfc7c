"""The lean accumulator hands out exactly the dense accumulator's strips, in a fraction of its memory."""

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from aerialseg.blend import LeanStripAccumulator, StripAccumulator, first_argmax
from aerialseg.conventions import NODATA_CLASS
from aerialseg.tiling import plan_tiles


def _stream(accumulator, plan, tiles):
    """Feed ``tiles`` (window, i, j, probabilities or None, valid) in strip order; collect the strips."""
    strips, row_off = [], -1
    for window, i, j, probabilities, valid in tiles:
        if window.row_off != row_off:
            row_off = window.row_off
            if (strip := accumulator.begin_row(row_off)) is not None:
                strips.append(strip)
        if probabilities is not None:
            accumulator.add(window, probabilities.copy(), plan.weights(i, j) * valid)
    strips.append(accumulator.finish())
    return strips


@settings(max_examples=40, deadline=None)
@given(
    height=st.integers(1, 150),
    width=st.integers(1, 150),
    tile=st.integers(8, 64),
    data=st.data(),
    blend=st.sampled_from(["cosine", "linear", "center"]),
    align=st.sampled_from([1, 8]),
)
def test_lean_strips_equal_dense_strips(height, width, tile, data, blend, align):
    overlap = data.draw(st.integers(0, tile - 1), label="overlap")  # beyond half a tile, three rows meet
    plan = plan_tiles(height, width, tile, overlap, blend, align=align)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), label="seed"))
    nodata = rng.random((height, width)) < data.draw(st.sampled_from([0.0, 0.3, 0.97]), label="nodata share")
    tiles = []
    for row in plan.tile_rows():
        for window, i, j in row:
            valid = ~nodata[
                window.row_off : window.row_off + window.height, window.col_off : window.col_off + window.width
            ]
            probabilities = rng.random((4, window.height, window.width), dtype=np.float32) if valid.any() else None
            tiles.append((window, i, j, probabilities, valid))
    dense = np.concatenate([s.classes for s in _stream(StripAccumulator(plan, 4), plan, tiles)])
    strips = _stream(LeanStripAccumulator(plan, 4), plan, tiles)
    lean = np.concatenate([s.classes for s in strips])
    assert lean.shape == (height, width)
    assert [s.row_off for s in strips] == list(np.cumsum([0] + [s.classes.shape[0] for s in strips[:-1]]))
    np.testing.assert_array_equal(lean, dense)
    np.testing.assert_array_equal(lean == NODATA_CLASS, nodata)


def test_lean_accumulator_resumes_at_a_tile_row():
    plan = plan_tiles(100, 70, 32, 8, align=8)
    rng = np.random.default_rng(1)
    tiles = [
        (w, i, j, rng.random((3, w.height, w.width), dtype=np.float32), np.ones((w.height, w.width), bool))
        for row in plan.tile_rows()
        for w, i, j in row
    ]
    whole = np.concatenate([s.classes for s in _stream(LeanStripAccumulator(plan, 3), plan, tiles)])
    start = plan.row_spans[2][0]
    later = [t for t in tiles if t[0].row_off >= start]
    resumed = _stream(LeanStripAccumulator(plan, 3, start_row=start), plan, later)
    assert resumed[0].row_off == start
    # Rows below the next tile row's start no longer depend on the rows that were skipped.
    tail = plan.row_spans[3][0]
    np.testing.assert_array_equal(np.concatenate([s.classes for s in resumed])[tail - start :], whole[tail:])


def test_carry_holds_only_the_overlap_rows():
    plan = plan_tiles(4096, 16384, 512, 64, align=32)
    lean, dense = LeanStripAccumulator(plan, 6), StripAccumulator(plan, 6)
    max_shared = max(r + h - nxt for (r, h), (nxt, _) in itertools.pairwise(plan.row_spans))
    assert lean.carry.shape == (7, max_shared, 16384)
    assert lean.carry.nbytes + lean.window.nbytes < (dense.scores.nbytes + dense.weights.nbytes) / 4


def test_first_argmax_takes_the_first_maximum():
    scores = np.array([[1, 3, 2, 2], [3, 3, 1, 2], [0, 3, 2, 1]], np.float32)[:, None]
    np.testing.assert_array_equal(first_argmax(scores)[0], np.argmax(scores, axis=0)[0])
    np.testing.assert_array_equal(first_argmax(scores)[0], [1, 0, 0, 0])
