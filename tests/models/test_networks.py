"""One battery for every registered network: counts, names, shapes, modes."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from aerialseg.errors import UnknownModelError
from aerialseg.models import ARCHITECTURES, create_model, get_spec, list_models
from aerialseg.models.attention import ChannelAttention

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


def test_registry_covers_every_published_variant(reference_param_counts):
    published = {(a, b) for a, b, _ in reference_param_counts}
    assert {(s.arch, s.backbone) for s in SPECS} == published


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_parameter_count_equals_reference(spec, reference_param_counts):
    expected = reference_param_counts[(spec.arch, spec.backbone, "total")]
    model = create_model(spec.arch, spec.backbone, num_classes=6)
    assert _count(model) == expected == spec.params(6)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_parameter_count_grows_with_classes_as_documented(spec):
    model = create_model(spec.arch, spec.backbone, num_classes=8)
    assert _count(model) == spec.params(8)


def test_abcnet_inference_path_uses_reference_count(reference_param_counts):
    expected = reference_param_counts[("abcnet", "resnet18", "inference")]
    model = create_model("abcnet", num_classes=6)
    for name, p in model.named_parameters():
        if name.endswith("gamma"):
            p.data.fill_(0.5)  # gamma = 0 would cut the attention projections off the gradient
    assert _eval_path_params(model, torch.rand(1, 3, 64, 64)) == expected == get_spec("abcnet").inference_params(6)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_state_dict_names_and_shapes_equal_reference(spec, reference_keys):
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
def test_padding_replicates_edges_crops_exactly_and_does_not_leak_between_batch_items(spec, attention_on):
    """A 50 x 75 input is padded inside to 64 x 96: the output is the top-left crop of the padded run."""
    torch.manual_seed(0)
    model = attention_on(create_model(spec.arch, spec.backbone, num_classes=3)).eval()
    x = torch.rand(1, 3, 50, 75)
    assert 50 % model.multiple and 75 % model.multiple  # sizes that need padding
    with torch.inference_mode():
        direct = model(x)
        padded_by_hand = model(F.pad(x, (0, 96 - 75, 0, 64 - 50), mode="replicate"))
        batched = model(torch.cat([x, torch.rand(1, 3, 50, 75)]))[:1]
    assert direct.shape == (1, 3, 50, 75)
    torch.testing.assert_close(direct, padded_by_hand[:, :, :50, :75], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(direct, batched, rtol=1e-4, atol=1e-5)


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


def test_channel_attention_energies_stay_float32_under_autocast_and_in_bf16_networks():
    """E = X X^T sums thousands of products: in bf16 (8 bits of mantissa) ``max E - E`` is mostly rounding.

    Post-ReLU features over a 48 x 64 map put E in the hundreds to thousands, where bf16's
    spacing is 4 to 8, so attention from bf16 energies is off by a third of the output's range.
    """
    torch.manual_seed(0)
    attention = ChannelAttention()
    with torch.no_grad():
        attention.gamma.fill_(1.0)
    x = torch.relu(torch.randn(2, 32, 48, 64))
    with torch.inference_mode():
        reference = attention(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = attention(x)
        x_bf16 = x.bfloat16()  # the CPU bf16 inference form: weights and activations in bf16
        in_bf16 = attention(x_bf16)
        reference_bf16 = attention(x_bf16.float())
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, reference)  # autocast does not reach the block
    assert in_bf16.dtype == torch.bfloat16
    error = (in_bf16.float() - reference_bf16).abs().max() / reference_bf16.abs().max()
    assert error < 0.02  # only ``A X`` is rounded to bf16; bf16 energies give ~0.3


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


@pytest.mark.cuda
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
