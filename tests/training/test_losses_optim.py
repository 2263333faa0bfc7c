"""Losses, Lookahead, schedules, augmentations and standardisation against direct computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from aerialseg.data.augment import flip_rotate, mosaic, random_scale, smart_crop
from aerialseg.models import create_model
from aerialseg.models.standardize import Standardize
from aerialseg.training.losses import SegmentationLoss, dice_loss, soft_cross_entropy
from aerialseg.training.optim import Lookahead, lr_factor, parameter_groups

IGNORE = 255


def test_soft_cross_entropy_by_hand():
    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 1.0]], [[1.0, 1.0]]]])  # (1, 3, 1, 2)
    target = torch.tensor([[[0, IGNORE]]])
    p = torch.softmax(torch.tensor([2.0, 0.0, 1.0]), 0)
    expected = 0.95 * -math.log(p[0]) + 0.05 * -torch.log(p).mean().item()
    # the ignored pixel counts neither in the sum nor in the denominator
    assert soft_cross_entropy(logits, target, IGNORE).item() == pytest.approx(expected, rel=1e-6)


def test_dice_by_hand_with_an_absent_class_and_ignored_pixels():
    logits = torch.randn(2, 3, 4, 5)
    target = torch.randint(0, 2, (2, 4, 5))  # class 2 absent
    target[0, 0, :] = IGNORE
    p = torch.softmax(logits, 1).numpy()
    t = target.numpy()
    valid = t != IGNORE
    losses = []
    for c in range(3):
        g = (t == c) & valid
        pc = p[:, c] * valid
        d = (2 * (pc * g).sum() + 0.05) / max(pc.sum() + g.sum() + 0.05, 1e-7)
        losses.append((1 - d) if g.any() else 0.0)
    assert dice_loss(logits, target, IGNORE).item() == pytest.approx(np.mean(losses), rel=1e-5)


def test_aux_outputs_weighted_by_0_4():
    main, aux = torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4)
    target = torch.randint(0, 3, (1, 4, 4))
    loss = SegmentationLoss(IGNORE)
    expected = loss(main, target) + 0.4 * soft_cross_entropy(aux, target, IGNORE)
    assert loss((main, aux), target).item() == pytest.approx(expected.item(), rel=1e-6)


def test_parameter_groups_give_every_backbone_the_lower_rate():
    for arch, prefix in (("manet", "backbone."), ("abcnet", "cp.resnet.")):
        model = create_model(arch, "resnet18")
        groups = parameter_groups(model, model.encoder_prefix, 6e-4, 6e-5, 0.01)
        backbone = {id(p) for g in groups if g["name"].startswith("backbone") for p in g["params"]}
        expected = {id(p) for n, p in model.named_parameters() if n.startswith(prefix)}
        assert backbone == expected and backbone
        assert all(g["lr"] == (6e-5 if g["name"].startswith("backbone") else 6e-4) for g in groups)
        no_decay = {id(p) for g in groups if g["weight_decay"] == 0 for p in g["params"]}
        assert no_decay == {id(p) for p in model.parameters() if p.ndim <= 1}


def test_lookahead_moves_slow_weights_every_k_steps():
    w = torch.nn.Parameter(torch.tensor([0.0]))
    opt = Lookahead(torch.optim.SGD([w], lr=1.0), k=2, alpha=0.5)
    for _ in range(2):  # gradient 1 each step: fast goes 0 -> -1 -> -2
        w.grad = torch.tensor([1.0])
        opt.step()
    # slow: 0 + 0.5 * (-2 - 0) = -1, and the fast weights are reset to it
    assert w.item() == pytest.approx(-1.0) and opt.slow[0].item() == pytest.approx(-1.0)
    w.grad = torch.tensor([1.0])
    opt.step()
    assert w.item() == pytest.approx(-2.0)  # between sync points only the inner optimizer acts


def test_schedules():
    assert lr_factor(0, "cosine-restarts", 105) == 1.0
    assert lr_factor(15, "cosine-restarts", 105) == 1.0 and lr_factor(45, "cosine-restarts", 105) == 1.0
    assert lr_factor(30, "cosine-restarts", 105) == pytest.approx(0.5)  # half way through 15..45
    assert lr_factor(20, "cosine", 40) == pytest.approx(0.5) and lr_factor(40, "cosine", 40) == pytest.approx(0)


def _aligned_pair(h=40, w=56):
    """An image whose first band encodes each pixel's label, so alignment can be checked after any transform."""
    rng = np.random.default_rng(1)
    label = torch.from_numpy(rng.integers(0, 6, (h, w)))
    image = torch.stack([label.float() / 10, torch.rand(h, w), torch.rand(h, w)])
    return image, label


def test_flips_rotations_and_crops_keep_image_and_label_aligned():
    image, label = _aligned_pair()
    for seed in range(8):
        rng = np.random.default_rng(seed)
        i, lab = flip_rotate(image, label, rotate90=True, flips=True, rng=rng)
        assert torch.equal((i[0] * 10).round().long(), lab)
        i, lab = smart_crop(i, lab, 32, IGNORE, 0.75, rng)
        assert i.shape == (3, 32, 32) and torch.equal((i[0] * 10).round().long(), lab)


def test_smart_crop_pads_small_images_with_ignore():
    image, label = _aligned_pair(20, 24)
    i, lab = smart_crop(image, label, 32, IGNORE, 0.75, np.random.default_rng(0))
    assert (lab[20:, :] == IGNORE).all() and (lab[:, 24:] == IGNORE).all() and (i[:, 20:, :] == 0).all()
    assert torch.equal(lab[:20, :24], label)


def test_mosaic_stitches_four_aligned_quadrants():
    pairs = [_aligned_pair() for _ in range(4)]
    i, lab = mosaic(pairs, IGNORE, np.random.default_rng(3))
    assert i.shape == pairs[0][0].shape and torch.equal((i[0] * 10).round().long(), lab)


@pytest.mark.parametrize("factor", [0.5, 2.0])
def test_random_scale_resizes_labels_by_nearest(factor):
    # ids 0, 3 and the ignore index side by side: any blend of neighbours (1, 2, 127, 129 ...) is not a label
    label = torch.from_numpy(np.random.default_rng(2).choice(np.array([0, 3, IGNORE]), size=(40, 40)))
    image = torch.rand(3, 40, 40)
    blended = torch.nn.functional.interpolate(label[None, None].float(), scale_factor=factor, mode="bilinear")
    assert not set(blended.long().unique().tolist()) <= {0, 3, IGNORE}  # so this test would catch a bilinear resize
    i, lab = random_scale(image, label, (factor,), np.random.default_rng(0))
    side = int(40 * factor)
    assert i.shape == (3, side, side) and lab.shape == (side, side) and lab.dtype == torch.int64
    assert set(lab.unique().tolist()) <= {0, 3, IGNORE}
    source = np.floor(np.arange(side) / factor).astype(int)  # nearest: output pixel i takes input pixel floor(i / f)
    assert torch.equal(lab, label[source][:, source])


def test_band_statistics_follow_the_bands():
    from aerialseg.training.outputs import band_statistics

    # three bands take ImageNet's statistics in file order whatever they are (Vaihingen NIR-R-G too)
    assert band_statistics(("NIR", "R", "G")) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    # Potsdam RGBIR: R, G, B by name, NIR neutral
    assert band_statistics(("R", "G", "B", "NIR")) == ((0.485, 0.456, 0.406, 0.5), (0.229, 0.224, 0.225, 0.25))


def test_standardize_by_band_as_float32_buffers():
    standardize = Standardize([0.5, 0.25], [0.25, 0.5])
    buffers = dict(standardize.named_buffers())
    assert set(buffers) == {"mean", "std"} and all(b.dtype == torch.float32 for b in buffers.values())
    assert buffers["mean"].shape == (1, 2, 1, 1) and list(standardize.parameters()) == []
    x = torch.rand(3, 2, 4, 5)
    expected = torch.stack([(x[:, 0] - 0.5) / 0.25, (x[:, 1] - 0.25) / 0.5], 1)
    assert torch.allclose(standardize(x), expected)
    with pytest.raises(ValueError, match="bands"):
        Standardize([0.5, 0.5], [0.25])
