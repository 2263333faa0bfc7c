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
    with pytest.raises(UnknownModelError, match="installed: .*abc-potsdam"):
        resolve_weights("abc-vaihingen")


SAMPLE = "manet-r18-potsdam-sample"


def _resave(src, dst, card_changes=None, tensor_changes=None):
    """A copy of a weights file written by safetensors itself, card fields and tensors replaced as given."""
    import json

    from safetensors.torch import load_file, save_file

    from aerialseg.conventions import CARD_KEY

    card = read_card(src).to_dict() | (card_changes or {})
    tensors = load_file(str(src)) | (tensor_changes or {})
    save_file(tensors, str(dst), metadata={CARD_KEY: json.dumps(card)})
    return dst


def test_save_weights_refuses_a_card_that_does_not_fit_the_tensors(tmp_path):
    model = create_model("abcnet", "resnet18", num_classes=6)
    info = DATASETS["potsdam"]
    five = ModelCard(arch="abcnet", backbone="resnet18", classes=info.classes[:5])
    with pytest.raises(WeightsError, match="lists 5 classes but conv_out.conv_out.weight has 384 output channels"):
        save_weights(model, five, tmp_path / "five.safetensors")
    four = _card().replace(bands=("R", "G", "B", "NIR"), mean=(0.5,) * 4, std=(0.2,) * 4)
    with pytest.raises(WeightsError, match="lists 4 bands but cp.resnet.conv1.weight reads 3"):
        save_weights(model, four, tmp_path / "four.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_the_tensors_hash_is_the_same_from_the_file_without_torch_and_checked_without_it(tmp_path):
    from aerialseg.weights import file_tensors_sha256, tensors_sha256, verified_card

    path = resolve_weights(SAMPLE)  # float16 weights and int64 counters
    tensors, card = read_weights(path)
    assert file_tensors_sha256(path) == tensors_sha256(tensors) == card.sha256 == verified_card(path).sha256
    damaged = tmp_path / "damaged.safetensors"
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    damaged.write_bytes(bytes(data))
    for check in (verified_card, read_weights):
        with pytest.raises(
            WeightsError, match=r"damaged.safetensors: tensors do not match the sha256 in its model card"
        ):
            check(damaged)


def test_a_card_without_sha256_gets_the_computed_one_never_a_skipped_check(tmp_path):
    from aerialseg.weights import verified_card

    bare = _resave(resolve_weights(SAMPLE), tmp_path / "bare.safetensors", {"sha256": ""})
    assert read_card(bare).sha256 == ""
    tensors, card = read_weights(bare)
    assert card.sha256 == read_card(resolve_weights(SAMPLE)).sha256 == verified_card(bare).sha256


def test_tensors_with_nan_are_refused(tmp_path):
    import torch

    sample = resolve_weights(SAMPLE)
    name = "finalconv3.bias"
    bad = _resave(sample, tmp_path / "nan.safetensors", {"sha256": ""}, {name: torch.full((6,), float("nan"))})
    with pytest.raises(WeightsError, match=f"nan.safetensors: tensors hold NaN or infinite values \\({name}\\)"):
        load_model(bad)


@pytest.fixture
def weights_folder(tmp_path, monkeypatch):
    """A weights folder on the search path: a usable copy of the sample, a junk file and a card with escape codes."""
    import shutil

    folder = tmp_path / "folder"
    folder.mkdir()
    shutil.copyfile(resolve_weights(SAMPLE), folder / "good.safetensors")
    (folder / "junk.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    names = ["\x1b[31mred\x1b[0m"] + [f"c{i}" for i in range(5)]
    classes = [{"name": n, "color": [0, 0, i], "in_mean": True} for i, n in enumerate(names)]
    _resave(resolve_weights(SAMPLE), folder / "escape.safetensors", {"classes": classes})
    monkeypatch.setenv("AERIALSEG_WEIGHTS", str(folder))
    return folder


def test_a_broken_file_in_a_weights_folder_breaks_nothing_else(weights_folder):
    from aerialseg.weights import scan_weights

    assert resolve_weights("good") == weights_folder / "good.safetensors"
    assert load_model("good")[1].arch == "manet"
    entries, broken = scan_weights()
    assert "good" in [e.name for e in entries]
    reasons = {b.name: b.reason for b in broken}
    assert reasons["junk"] == "not a safetensors file (header is not JSON)"
    assert "control characters" in reasons["escape"] and reasons["escape"].isprintable()
    assert {"junk", "escape"}.isdisjoint(e.name for e in list_weights())
    with pytest.raises(WeightsError, match=r"junk.safetensors: not a safetensors file"):
        resolve_weights("junk")
    with pytest.raises(UnknownModelError, match="installed: good"):
        resolve_weights("absent")


def test_models_lists_broken_files_with_their_reason_and_goes_on(cli, weights_folder):
    import json

    code, out, err = cli(["models"])
    assert code == 0, err
    assert "cannot be used" in out and "junk" in out and "good" in out and "\x1b" not in out
    code, out, _ = cli(["models", "--json"])
    listing = json.loads(out)
    assert "good" in [w["name"] for w in listing["weights"]]
    broken = {b["name"]: b["problem"] for b in listing["broken_weights"]}
    assert broken["junk"] == "not a safetensors file (header is not JSON)" and "escape" in broken


def test_a_broken_weights_file_asked_for_is_one_line_without_escape_codes(cli, weights_folder):
    for argv in (["weights", "info", "escape"], ["weights", "info", str(weights_folder / "escape.safetensors")]):
        code, out, err = cli(argv)
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 1 and len(lines) == 1 and "escape.safetensors" in lines[0], err
        assert "control characters" in lines[0] and "\x1b" not in err + out
