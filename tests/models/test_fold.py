"""BatchNorm folding: the inference form computes what the network computes, on every architecture."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from aerialseg.models import create_model, list_models
from aerialseg.models.fold import fold_batchnorm

SPECS = list_models()


def trained_looking(model: nn.Module) -> nn.Module:
    """BatchNorm statistics far from the identity, as after training, so folding has work to do."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                c = module.num_features
                module.running_mean.copy_(torch.rand(c, generator=generator) - 0.5)
                module.running_var.copy_(torch.rand(c, generator=generator) * 1.5 + 0.5)
                module.weight.copy_(torch.rand(c, generator=generator) + 0.5)
                module.bias.copy_(torch.rand(c, generator=generator) * 0.4 - 0.2)
    return model


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_folded_network_equals_the_original(spec, attention_on):
    torch.manual_seed(0)
    model = trained_looking(attention_on(create_model(spec.arch, spec.backbone, num_classes=6))).eval()
    original = copy.deepcopy(model)
    before = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    folded = fold_batchnorm(model, bands=3)
    left = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert folded > 0 and left == before - folded
    x = torch.rand(1, 3, 96, 160)  # not the size the pairs were found on
    with torch.inference_mode():
        expected, got = original(x), model(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))


def test_a_convolution_whose_output_is_also_used_elsewhere_is_not_folded():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y  # folding would change the second term

    model = trained_looking(Shared()).eval()
    weight = model.conv.weight.clone()
    assert fold_batchnorm(model, bands=3) == 0
    assert isinstance(model.bn, nn.BatchNorm2d) and torch.equal(model.conv.weight, weight)


def test_training_mode_is_refused():
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(create_model("abcnet", "resnet18", num_classes=2), bands=3)
