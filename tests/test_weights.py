from __future__ import annotations

import struct

import pytest
import torch

from aerialseg.card import ModelCard
from aerialseg.data.classes import DATASETS
from aerialseg.errors import OutputExistsError, UnknownModelError, WeightsError
from aerialseg.models import create_model
from aerialseg.weights import list_weights, load_model, read_card, read_weights, resolve_weights, save_weights


def _trained_like(attention_on, arch="abcnet", backbone="resnet18"):
    """A network with non-trivial attention (gamma != 0) and BN statistics, as after training."""
    torch.manual_seed(0)
    model = attention_on(create_model(arch, backbone, num_classes=6), gamma=0.4)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("running_mean"):
                tensor.normal_(0, 0.1)
            elif name.endswith("running_var"):
                tensor.uniform_(0.5, 2.0)
    return model.eval()


def _card(arch="abcnet", backbone="resnet18"):
    info = DATASETS["potsdam"]
    return ModelCard(
        arch=arch,
        backbone=backbone,
        classes=info.classes,
        bands=info.bands,
        gsd_m=0.05,
        dataset="potsdam",
        metrics={"mIoU": 12.5},
    )


def test_round_trip_keeps_card_and_outputs_bit_identical(tmp_path, neon_tif, attention_on):
    import rasterio

    model = _trained_like(attention_on)
    path = tmp_path / "abc.safetensors"
    written = save_weights(model, _card(), path)
    loaded, card = load_model(path)
    assert card == written
    assert card.sha256 and card.aerialseg_version
    assert card.replace(sha256="", aerialseg_version="") == _card()
    assert not loaded.training
    with rasterio.open(neon_tif) as src:
        x = torch.from_numpy(src.read()[:, :128, :192].astype("float32") / 255)[None]
    with torch.inference_mode():
        assert torch.equal(loaded(x), model(x))


def test_half_storage_halves_the_file_and_stays_close(tmp_path, attention_on):
    model = _trained_like(attention_on)
    full = tmp_path / "full.safetensors"
    half = tmp_path / "half.safetensors"
    save_weights(model, _card(), full)
    save_weights(model, _card(), half, half=True)
    assert half.stat().st_size < 0.55 * full.stat().st_size
    loaded, _ = load_model(half)
    assert next(loaded.parameters()).dtype == torch.float32
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        agreement = (loaded(x).argmax(1) == model(x).argmax(1)).float().mean()
    assert agreement > 0.99


def test_altered_tensors_are_detected(tmp_path, attention_on):
    path = tmp_path / "w.safetensors"
    save_weights(_trained_like(attention_on), _card(), path)
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF  # flip bits inside the last tensor's bytes
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="sha256"):
        read_weights(path)


def test_file_without_card_is_refused_with_the_fix(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "plain.safetensors"
    save_file({"x": torch.zeros(2)}, str(path))
    with pytest.raises(WeightsError, match="no aerialseg model card.*weights import"):
        load_model(path)


def test_not_a_weights_file(tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(struct.pack("<Q", 10) + b"not json!!")
    with pytest.raises(WeightsError, match="not a safetensors file"):
        read_card(path)


def test_existing_output_needs_overwrite(tmp_path, attention_on):
    path = tmp_path / "w.safetensors"
    save_weights(_trained_like(attention_on), _card(), path)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        save_weights(_trained_like(attention_on), _card(), path)
    save_weights(_trained_like(attention_on), _card(), path, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]  # no temporary left behind


def test_names_resolve_through_the_environment_folder(tmp_path, monkeypatch, attention_on):
    folder = tmp_path / "my-weights"
    folder.mkdir()
    save_weights(_trained_like(attention_on), _card(), folder / "abc-potsdam.safetensors")
    monkeypatch.setenv("AERIALSEG_WEIGHTS", str(folder))
    assert resolve_weights("abc-potsdam") == folder / "abc-potsdam.safetensors"
    entry = next(e for e in list_weights() if e.name == "abc-potsdam")
    assert entry.card.dataset == "potsdam"
    model, card = load_model("abc-potsdam")
    assert card.arch == "abcnet"
    with pytest.raises(UnknownModelError, match="available: .*abc-potsdam"):
        resolve_weights("abc-vaihingen")
