from __future__ import annotations

import numpy as np
import pytest

from aerialseg.runners.tta import TTARunner


def group_average(base, batch, mode):
    """The D4 (or flip) group average written out view by view."""
    flip_w = lambda a: a[..., ::-1]  # noqa: E731
    flip_h = lambda a: a[..., ::-1, :]  # noqa: E731
    if mode == "flip":
        transforms = [
            (lambda a: a, lambda a: a),
            (flip_w, flip_w),
            (flip_h, flip_h),
            (lambda a: flip_h(flip_w(a)), lambda a: flip_w(flip_h(a))),
        ]
    else:
        transforms = []
        for k in range(4):
            transforms.append((lambda a, k=k: np.rot90(a, k, (2, 3)), lambda a, k=k: np.rot90(a, -k, (2, 3))))
            transforms.append(
                (lambda a, k=k: np.rot90(flip_w(a), k, (2, 3)), lambda a, k=k: flip_w(np.rot90(a, -k, (2, 3))))
            )
    return np.mean([undo(base(np.ascontiguousarray(do(batch)))) for do, undo in transforms], axis=0)


@pytest.mark.parametrize("mode, views", [("flip", 4), ("d4", 8)])
def test_tta_is_the_group_average_in_probability_space(mode, views, context_runner):
    base = context_runner()
    batch = np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32)
    out = TTARunner(base, mode)(batch)
    assert base.tiles == 2 * views
    np.testing.assert_allclose(out, group_average(context_runner(), batch, mode), atol=1e-6)
    np.testing.assert_allclose(out.sum(1), 1.0, atol=1e-5)


def test_d4_on_a_per_pixel_runner_changes_nothing_and_falls_back_to_flips_on_rectangles(context_runner):
    class PerPixel(context_runner):
        def __call__(self, batch):
            self.tiles += len(batch)
            logits = np.einsum("kc,nchw->nkhw", self.a, batch)
            e = np.exp(logits - logits.max(1, keepdims=True))
            return e / e.sum(1, keepdims=True)

    base = PerPixel()
    batch = np.random.default_rng(1).random((1, 3, 16, 16), dtype=np.float32)
    np.testing.assert_allclose(TTARunner(base, "d4")(batch), base(batch), atol=1e-6)
    rect = np.random.default_rng(2).random((1, 3, 16, 24), dtype=np.float32)
    base.tiles = 0
    np.testing.assert_allclose(TTARunner(base, "d4")(rect), base(rect), atol=1e-6)
    assert base.tiles == 4 + 1
