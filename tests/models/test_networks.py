"""One battery for every registered network: counts, names, shapes, modes."""

from __future__ import annotations

import re

import pytest
import torch
from conftest import reference_keys, reference_param_counts, requires_cuda

from aerialseg.errors import UnknownModelError
from aerialseg.models import ARCHITECTURES, create_model, get_spec, list_models

SPECS = list_models()
IDS = [s.name for s in SPECS]
REF_FILES = {
    "manet-resnet50": ["ref_keys_manet.txt", "ref_keys_manet_lironui_orig.txt"],
    "manet-resnet18": ["ref_keys_manet_resnet18.txt"],
    "maresunet-resnet34": ["ref_keys_maresunet_resnet34.txt"],
    "maresunet-resnet18": ["ref_keys_maresunet_resnet18.txt"],
    "abcnet-resnet18": ["ref_keys_abcnet.txt"],
}


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _eval_path_params(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Parameters that receive a gradient from the eval-mode output."""
    model.eval()
    model.zero_grad()
    model(x).sum().backward()
    return sum(p.numel() for p in model.parameters() if p.grad is not None)


def test_registry_covers_every_published_variant():
    published = {(a, b) for a, b, _ in reference_param_counts()}
    assert {(s.arch, s.backbone) for s in SPECS} == published


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_parameter_count_equals_reference(spec):
    expected = reference_param_counts()[(spec.arch, spec.backbone, "total")]
    model = create_model(spec.arch, spec.backbone, num_classes=6)
    assert _count(model) == expected == spec.params(6)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_parameter_count_grows_with_classes_as_documented(spec):
    model = create_model(spec.arch, spec.backbone, num_classes=8)
    assert _count(model) == spec.params(8)


def test_abcnet_inference_path_uses_reference_count():
    expected = reference_param_counts()[("abcnet", "resnet18", "inference")]
    model = create_model("abcnet", num_classes=6)
    for name, p in model.named_parameters():
        if name.endswith("gamma"):
            p.data.fill_(0.5)  # gamma = 0 would cut the attention projections off the gradient
    assert _eval_path_params(model, torch.rand(1, 3, 64, 64)) == expected == get_spec("abcnet").inference_params(6)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_state_dict_names_and_shapes_equal_reference(spec):
    ours = {
        k: (tuple(v.shape), str(v.dtype).removeprefix("torch."))
        for k, v in create_model(spec.arch, spec.backbone).state_dict().items()
    }
    for filename in REF_FILES[spec.name]:
        ref = reference_keys(filename)
        # The original authors' encoder naming; aerialseg uses torchvision's under backbone.
        renamed = {
            re.sub(
                r"^encoder(\d)\.",
                r"backbone.layer\1.",
                k.replace("firstconv.", "backbone.conv1.").replace("firstbn.", "backbone.bn1."),
            ): v
            for k, v in ref.items()
        }
        assert renamed == ours, filename


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
@pytest.mark.parametrize("size", [(64, 64), (64, 96), (96, 32), (37, 53), (1, 1)], ids=str)
def test_eval_forward_returns_logits_at_input_size(spec, size):
    model = create_model(spec.arch, spec.backbone, num_classes=5).eval()
    x = torch.rand(2, 3, *size)
    with torch.inference_mode():
        y = model(x)
    assert isinstance(y, torch.Tensor)
    assert y.shape == (2, 5, *size)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_padding_does_not_leak_between_batch_items_and_crops_exactly(spec):
    """Odd sizes are padded inside; the valid region of a padded run equals the direct run."""
    torch.manual_seed(0)
    model = create_model(spec.arch, spec.backbone, num_classes=3).eval()
    x = torch.rand(1, 3, 64, 96)
    with torch.inference_mode():
        whole = model(x)
        again = model(torch.cat([x, torch.rand(1, 3, 64, 96)]))[:1]
    torch.testing.assert_close(whole, again, rtol=1e-4, atol=1e-5)


def test_abcnet_training_mode_returns_main_and_two_auxiliary_outputs():
    model = create_model("abcnet", num_classes=6).train()
    outputs = model(torch.rand(2, 3, 64, 96))
    assert isinstance(outputs, tuple) and len(outputs) == 3
    assert all(o.shape == (2, 6, 64, 96) for o in outputs)
    model.eval()
    assert isinstance(model(torch.rand(1, 3, 64, 96)), torch.Tensor)


@pytest.mark.parametrize("arch", ["manet", "maresunet"])
def test_single_output_networks_return_a_tensor_in_training(arch):
    model = create_model(arch, "resnet18", num_classes=4).train()
    assert model(torch.rand(2, 3, 64, 64)).shape == (2, 4, 64, 64)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_encoder_is_the_resnet_with_torchvision_names(spec):
    model = create_model(spec.arch, spec.backbone)
    names = set(model.encoder().state_dict())
    assert {"conv1.weight", "bn1.running_mean", "layer4.0.downsample.0.weight"} <= names
    assert not any(n.startswith("fc.") for n in names)


def test_channel_attention_stays_float32_under_autocast():
    torch.manual_seed(0)
    model = create_model("manet", "resnet18", num_classes=6).eval()
    for name, p in model.named_parameters():
        if name.endswith("gamma"):
            p.data.fill_(0.1)
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        reference = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model(x)
    assert torch.isfinite(mixed).all()
    agreement = (mixed.float().argmax(1) == reference.argmax(1)).float().mean()
    assert agreement > 0.9


def test_in_channels_other_than_three():
    model = create_model("abcnet", num_classes=2, in_channels=4).eval()
    assert model(torch.rand(1, 4, 64, 64)).shape == (1, 2, 64, 64)


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(UnknownModelError, match="manet, maresunet, abcnet"):
        get_spec("unet")
    with pytest.raises(UnknownModelError, match="resnet34, resnet18"):
        get_spec("maresunet", "resnet50")
    assert get_spec("MAResU-Net").backbone == ARCHITECTURES["maresunet"][2]
    assert [s.name for s in list_models("manet-*")] == ["manet-resnet50", "manet-resnet18"]


@requires_cuda
@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_cuda_mixed_precision_matches_float32(spec):
    torch.manual_seed(0)
    model = create_model(spec.arch, spec.backbone, num_classes=6).cuda().eval()
    for name, p in model.named_parameters():
        if name.endswith("gamma"):
            p.data.fill_(0.3)
    x = torch.rand(2, 3, 256, 320, device="cuda")
    with torch.inference_mode():
        reference = model(x)
        with torch.autocast("cuda", dtype=torch.float16):
            mixed = model(x)
    assert torch.isfinite(mixed).all()
    assert (mixed.argmax(1) == reference.argmax(1)).float().mean() > 0.98
