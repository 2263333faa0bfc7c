"""Import of checkpoints named as the reference code names them (../shared/reference/ref_keys_*.txt)."""

from __future__ import annotations

import argparse
import os

import pytest
import torch

from aerialseg.checkpoint_import import import_checkpoint, load_backbone_weights, read_checkpoint
from aerialseg.errors import WeightsError
from aerialseg.models import create_model
from aerialseg.weights import load_model, read_weights

CASES = [
    # reference dump, arch, backbone, how the reference's names map to ours
    ("ref_keys_manet.txt", "manet", "resnet50", {}),
    ("ref_keys_manet_resnet18.txt", "manet", "resnet18", {}),
    (
        "ref_keys_manet_lironui_orig.txt",
        "manet",
        "resnet50",
        {"firstconv.": "backbone.conv1.", "firstbn.": "backbone.bn1."},
    ),
    (
        "ref_keys_maresunet_resnet34.txt",
        "maresunet",
        "resnet34",
        {"firstconv.": "backbone.conv1.", "firstbn.": "backbone.bn1."},
    ),
    (
        "ref_keys_maresunet_resnet18.txt",
        "maresunet",
        "resnet18",
        {"firstconv.": "backbone.conv1.", "firstbn.": "backbone.bn1."},
    ),
    ("ref_keys_abcnet.txt", "abcnet", "resnet18", {}),
]


def reference_state_dict(reference_keys, filename: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with exactly the reference's names, shapes and dtypes (``reference_keys``: the fixture)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, (shape, dtype) in reference_keys(filename).items():
        if dtype == "int64":
            state[name] = torch.randint(0, 1000, shape, generator=generator)
        else:
            state[name] = torch.randn(shape, generator=generator)
    return state


def expected_name(name: str, renames: dict[str, str]) -> str:
    for old, new in renames.items():
        if name.startswith(old):
            return new + name[len(old) :]
    if name.startswith("encoder"):
        return "backbone.layer" + name[len("encoder") :]
    return name


def lightning_checkpoint(state: dict[str, torch.Tensor]) -> dict:
    """What GeoSeg's trainer writes: Lightning's top-level keys, the net's tensors prefixed 'net.'."""
    return {
        "epoch": 44,
        "global_step": 12345,
        "pytorch-lightning_version": "2.6.6",
        "state_dict": {f"net.{k}": v for k, v in state.items()},
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 45}}}},
        "callbacks": {"ModelCheckpoint{'monitor': 'val_F1', 'mode': 'max'}": {"best_model_score": torch.tensor(0.9)}},
        "optimizer_states": [{"state": {0: {"step": torch.tensor(5.0)}}, "param_groups": [{"lr": 6e-4}]}],
        "lr_schedulers": [{"T_0": 15, "T_mult": 2, "base_lrs": [6e-4]}],
    }


@pytest.mark.parametrize("filename, arch, backbone, renames", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("packaging", ["geoseg-lightning", "bare"])
def test_every_reference_entry_lands_under_its_name(
    tmp_path, reference_keys, filename, arch, backbone, renames, packaging
):
    state = reference_state_dict(reference_keys, filename)
    src = tmp_path / ("model.ckpt" if packaging == "geoseg-lightning" else "model.pth")
    torch.save(lightning_checkpoint(state) if packaging == "geoseg-lightning" else state, src)
    dst = tmp_path / "model.safetensors"
    card = import_checkpoint(src, dst, arch=arch, backbone=backbone, dataset="vaihingen")
    tensors, _ = read_weights(dst)
    assert len(tensors) == len(state)
    for name, value in state.items():
        assert torch.equal(tensors[expected_name(name, renames)], value), name
    assert card.num_classes == 6 and card.bands == ("NIR", "R", "G") and card.gsd_m == 0.09
    assert ("Lightning" in card.source) == (packaging == "geoseg-lightning")
    model, _ = load_model(dst)
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, 6, 64, 64)


def test_number_of_classes_is_read_from_the_checkpoint(tmp_path):
    model = create_model("abcnet", num_classes=8)
    torch.save(model.state_dict(), tmp_path / "uavid.pth")
    card = import_checkpoint(tmp_path / "uavid.pth", tmp_path / "out.safetensors", arch="abcnet", dataset="uavid")
    assert card.num_classes == 8 and card.class_names[0] == "building" and card.gsd_m is None


def test_missing_leftover_and_misshapen_entries_are_listed(tmp_path, reference_keys):
    state = reference_state_dict(reference_keys, "ref_keys_abcnet.txt")
    del state["fam.conv_atten.gamma"]
    state["decoder9.weight"] = torch.zeros(3)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(WeightsError) as info:
        import_checkpoint(tmp_path / "bad.pth", tmp_path / "o.safetensors", arch="abcnet", num_classes=6)
    message = str(info.value)
    assert "1 missing: fam.conv_atten.gamma" in message
    assert "1 left over: decoder9.weight" in message
    assert not (tmp_path / "o.safetensors").exists()

    torch.save(reference_state_dict(reference_keys, "ref_keys_manet_resnet18.txt"), tmp_path / "six.pth")
    with pytest.raises(WeightsError, match=r"finalconv3.weight \(6, 32, 3, 3\)!=\(8, 32, 3, 3\).*--num-classes"):
        import_checkpoint(
            tmp_path / "six.pth", tmp_path / "o.safetensors", arch="manet", backbone="resnet18", num_classes=8
        )
    with pytest.raises(WeightsError, match="wrong shape"):
        import_checkpoint(tmp_path / "six.pth", tmp_path / "o.safetensors", arch="manet", backbone="resnet50")


class _Payload:
    """Unpickling this runs a shell command: the classic malicious checkpoint."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_running_it(tmp_path, reference_keys):
    marker = tmp_path / "pwned"
    state = reference_state_dict(reference_keys, "ref_keys_abcnet.txt")
    torch.save({"state_dict": state, "extra": _Payload(marker)}, tmp_path / "evil.ckpt")
    with pytest.raises(WeightsError, match="refused: loading it would run Python code.*--trust-pickle"):
        import_checkpoint(tmp_path / "evil.ckpt", tmp_path / "o.safetensors", arch="abcnet")
    assert not marker.exists()
    assert not (tmp_path / "o.safetensors").exists()


def test_trust_pickle_is_an_explicit_opt_in(tmp_path, reference_keys):
    state = reference_state_dict(reference_keys, "ref_keys_abcnet.txt")
    torch.save({"state_dict": state, "hyper_parameters": argparse.Namespace(lr=6e-4)}, tmp_path / "hp.ckpt")
    with pytest.raises(WeightsError, match="refused"):
        read_checkpoint(tmp_path / "hp.ckpt")
    with pytest.warns(UserWarning, match="trust-pickle"):
        content = read_checkpoint(tmp_path / "hp.ckpt", trust_pickle=True)
    assert content["hyper_parameters"].lr == 6e-4


def test_garbage_files_are_not_checkpoints(tmp_path):
    (tmp_path / "x.pth").write_bytes(b"\x00" * 64)
    with pytest.raises(WeightsError, match="not a readable checkpoint"):
        read_checkpoint(tmp_path / "x.pth")
    with pytest.raises(WeightsError, match="no such file"):
        read_checkpoint(tmp_path / "absent.pth")


@pytest.mark.parametrize(
    "arch, backbone, filename, prefix",
    [
        ("abcnet", "resnet18", "ref_keys_abcnet.txt", "cp.resnet."),
        ("manet", "resnet50", "ref_keys_manet.txt", "backbone."),
        ("maresunet", "resnet34", "ref_keys_maresunet_resnet34.txt", None),
    ],
)
def test_imagenet_backbone_weights_load_with_torchvision_names(
    tmp_path, reference_keys, arch, backbone, filename, prefix
):
    """A torchvision ImageNet file: classifier included, no BN step counters (pre-0.4.1 format)."""
    ref = reference_state_dict(reference_keys, filename, seed=3)
    if prefix:
        trunk = {k[len(prefix) :]: v for k, v in ref.items() if k.startswith(prefix)}
    else:  # the original MAResU-Net names its torchvision trunk firstconv/firstbn/encoderN
        trunk = {
            expected_name(k, {"firstconv.": "backbone.conv1.", "firstbn.": "backbone.bn1."}): v
            for k, v in ref.items()
            if k.startswith(("firstconv", "firstbn", "encoder"))
        }
        trunk = {k[len("backbone.") :]: v for k, v in trunk.items()}
    trunk = {k: v for k, v in trunk.items() if not k.endswith("num_batches_tracked")}
    width = 2048 if backbone == "resnet50" else 512  # pooled features feeding the classifier
    trunk |= {"fc.weight": torch.randn(1000, width), "fc.bias": torch.randn(1000)}
    torch.save(trunk, tmp_path / f"{backbone}.pth")
    model = create_model(arch, backbone)
    assert load_backbone_weights(model, tmp_path / f"{backbone}.pth") == len(model.encoder().state_dict())
    loaded = model.encoder().state_dict()
    for name, value in trunk.items():
        if not name.startswith("fc."):
            assert torch.equal(loaded[name], value), name

    wrong = {k: v for k, v in trunk.items() if not k.startswith("layer4")}
    torch.save(wrong, tmp_path / "partial.pth")
    with pytest.raises(WeightsError, match="missing: layer4"):
        load_backbone_weights(model, tmp_path / "partial.pth")
