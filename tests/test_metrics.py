"""Metrics against confusion matrices computed by hand."""

import numpy as np
import pytest

from aerialseg.metrics import ConfusionMatrix


def test_three_class_matrix_by_hand():
    # ground truth / prediction pairs written out pixel by pixel:
    #   class 0: 4 pixels -> 3 right, 1 predicted as 1
    #   class 1: 3 pixels -> 2 right, 1 predicted as 2
    #   class 2: 2 pixels -> 2 right
    #   plus 3 ignored pixels (255) predicted as anything
    target = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 255, 255, 255])
    pred = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 0, 1, 2])
    cm = ConfusionMatrix(3)
    cm.update(target, pred)
    assert cm.matrix.tolist() == [[3, 1, 0], [0, 2, 1], [0, 0, 2]]
    s = cm.scores(["a", "b", "c"])
    # class a: P=3/3, R=3/4 -> F1 = 2*1*0.75/1.75 = 6/7; IoU = 3/4
    # class b: P=2/3, R=2/3 -> F1 = 2/3; IoU = 2/4
    # class c: P=2/3, R=1 -> F1 = 0.8; IoU = 2/3
    np.testing.assert_allclose(s.f1, [6 / 7, 2 / 3, 0.8])
    np.testing.assert_allclose(s.iou, [0.75, 0.5, 2 / 3])
    np.testing.assert_allclose(s.precision, [1, 2 / 3, 2 / 3])
    np.testing.assert_allclose(s.recall, [0.75, 2 / 3, 1])
    assert s.oa == pytest.approx(7 / 9)
    assert s.mean_f1 == pytest.approx((6 / 7 + 2 / 3 + 0.8) / 3)
    assert s.miou == pytest.approx((0.75 + 0.5 + 2 / 3) / 3)
    assert s.pixels == 9


def test_clutter_counts_in_oa_but_not_in_means():
    # ISPRS convention: class 2 (clutter) trained and in OA, excluded from mean F1 / mIoU.
    cm = ConfusionMatrix(3)
    cm.update(np.array([0, 0, 1, 1, 2, 2]), np.array([0, 0, 1, 0, 2, 1]))
    s = cm.scores(["imp", "bld", "clutter"], in_mean=[True, True, False])
    # imp: TP 2, FP 1 (a bld pixel), FN 0 -> F1 4/5, IoU 2/3; bld: TP 1, FP 1, FN 1 -> F1 1/2, IoU 1/3
    assert s.mean_f1 == pytest.approx((0.8 + 0.5) / 2)
    assert s.miou == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert s.oa == pytest.approx(4 / 6)  # clutter's right pixel counts
    assert s.f1[2] == pytest.approx(2 / 3)  # still reported


def test_class_absent_from_ground_truth():
    cm = ConfusionMatrix(3)
    # class 2 never in the ground truth: never predicted -> undefined, left out of the means
    cm.update(np.array([0, 1, 1]), np.array([0, 1, 1]))
    s = cm.scores(["a", "b", "c"])
    assert np.isnan(s.f1[2]) and np.isnan(s.iou[2])
    assert s.mean_f1 == 1.0 and s.miou == 1.0
    assert s.to_dict()["classes"]["c"]["f1"] is None
    # ... but predicted somewhere: its false positives are errors, F1 = IoU = 0 in the means
    cm.update(np.array([0]), np.array([2]))
    s = cm.scores(["a", "b", "c"])
    assert s.f1[2] == 0 and s.iou[2] == 0
    # a: TP 1, FN 1 -> F1 2/3, IoU 1/2; b: 1, 1; c: 0, 0
    assert s.mean_f1 == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert s.miou == pytest.approx((0.5 + 1 + 0) / 3)


def test_ignore_index_and_out_of_range_targets_are_skipped():
    cm = ConfusionMatrix(2, ignore_index=6)
    cm.update(np.array([[0, 6], [1, 255]]), np.array([[0, 1], [1, 1]]))
    assert cm.matrix.tolist() == [[1, 0], [0, 1]]


def test_nodata_prediction_at_a_labelled_pixel_is_an_error():
    cm = ConfusionMatrix(2)
    cm.update(np.array([255, 0]), np.array([255, 0]))  # nodata where ignored: fine
    with pytest.raises(ValueError, match="outside"):
        cm.update(np.array([0, 1]), np.array([255, 1]))


def test_matches_a_loop_over_pixels_on_random_maps():
    rng = np.random.default_rng(0)
    k = 6
    target = rng.integers(0, k + 1, size=(64, 64))
    target[target == k] = 255
    pred = rng.integers(0, k, size=(64, 64))
    cm = ConfusionMatrix(k)
    for half in (slice(0, 32), slice(32, 64)):  # accumulated in two parts
        cm.update(target[half], pred[half])
    expected = np.zeros((k, k), dtype=int)
    for t, p in zip(target.ravel(), pred.ravel(), strict=True):
        if t != 255:
            expected[t, p] += 1
    assert (cm.matrix == expected).all()
    other = ConfusionMatrix(k)
    other.merge(cm)
    assert (other.matrix == expected).all()


def test_from_counts_scores_like_the_matrix_it_was_counted_in():
    counted = ConfusionMatrix(3)
    counted.update(np.array([0, 0, 1, 1, 2, 2]), np.array([0, 0, 1, 0, 2, 1]))
    rebuilt = ConfusionMatrix.from_counts(counted.matrix.astype(np.int32), ignore_index=9)
    assert rebuilt.num_classes == 3 and rebuilt.ignore_index == 9
    assert rebuilt.matrix.dtype == np.int64 and (rebuilt.matrix == counted.matrix).all()
    assert rebuilt.scores(["a", "b", "c"]).to_dict() == counted.scores(["a", "b", "c"]).to_dict()
    rebuilt.update(np.array([0]), np.array([0]))  # its own copy: the source is untouched
    assert counted.matrix[0, 0] == 2


def test_from_counts_refuses_a_non_square_array():
    with pytest.raises(ValueError, match="square"):
        ConfusionMatrix.from_counts(np.zeros((2, 3), dtype=np.int64))
