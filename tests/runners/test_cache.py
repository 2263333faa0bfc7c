"""The ONNX export and int8 caches: keyed by everything that shapes a graph, verified before each use.

Also the graphs ONNX Runtime is handed: one it cannot load, or whose card does not fit it, is one error line.

Most tests replace the exporter by a stand-in that writes a one-node graph carrying the metadata
a real export embeds (the card as loading the weights reads it, and the cache key), so the
cache's decisions are tested in milliseconds; one slow test runs the real export end to end.
int8 quantization is real, on a one-convolution graph.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio

from aerialseg.card import onnx_metadata, read_card
from aerialseg.conventions import CARD_KEY, CLASS_NAMES_TAG, PRECISION_KEY
from aerialseg.errors import WeightsError
from aerialseg.runners.onnx_runner import (
    CACHE_KEY,
    cached_export,
    export_cache_entry,
    onnx_cache_dir,
    seal_cache_entry,
)
from aerialseg.runners.quantize import cached_int8
from aerialseg.weights import read_weights, resolve_weights

SAMPLE = "manet-r18-potsdam-sample"
RENAMED = ["road", "roof", "grass", "forest", "vehicle", "other"]


def _resave(src, dst, card_changes=None, tensor_changes=None):
    """A copy of a weights file written by safetensors itself, card fields and tensors replaced as given."""
    from safetensors.torch import load_file, save_file

    card = read_card(src).to_dict() | (card_changes or {})
    tensors = load_file(str(src)) | (tensor_changes or {})
    save_file(tensors, str(dst), metadata={CARD_KEY: json.dumps(card)})
    return dst


def _other_card(card):
    """The same network described otherwise: other class names, another normalisation."""
    classes = [c | {"name": name} for c, name in zip(card["classes"], RENAMED, strict=True)]
    return {"classes": classes, "mean": [0.3, 0.3, 0.3], "std": [0.1, 0.1, 0.1]}


@pytest.fixture
def pair(tmp_path):
    """The sample weights and a copy with the same tensors under another card."""
    sample = resolve_weights(SAMPLE)
    first = tmp_path / "first.safetensors"
    shutil.copyfile(sample, first)
    second = _resave(sample, tmp_path / "second.safetensors", _other_card(read_card(sample).to_dict()))
    return first, second


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh cache folder for the test."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return onnx_cache_dir()


def _graph(path, metadata, weight=None):
    """A one-convolution graph (3 bands -> 6 class probabilities) with the given metadata properties."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = np.linspace(-1, 1, 18, dtype=np.float32).reshape(6, 3, 1, 1) if weight is None else weight
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, "height", "width"])
    output = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 6, "height", "width"])
    nodes = [helper.make_node("Conv", ["image", "w"], ["logits"]), helper.make_node("Softmax", ["logits"], ["output"])]
    graph = helper.make_graph(nodes, "g", [image], [output], [numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def exports(cache, monkeypatch):
    """The weights files exported so far; the exporter is a stand-in that embeds what a real export does."""
    done = []

    def export(weights, output_path, *, extra_metadata=None, **options):
        _, card = read_weights(weights)  # the card a real export embeds
        _graph(Path(output_path), {CARD_KEY: card.to_json(), **(extra_metadata or {})})
        done.append(Path(weights).name)

    monkeypatch.setattr("aerialseg.export.export_onnx", export)
    return done


def test_same_tensors_under_another_card_get_their_own_graph(pair, exports):
    first, second = pair
    graphs = [cached_export(first), cached_export(second), cached_export(first), cached_export(second)]
    assert graphs[0] != graphs[1] and graphs[2:] == graphs[:2]
    assert exports == ["first.safetensors", "second.safetensors"]  # each exported once, then reused
    assert [c.name for c in read_card(graphs[1]).classes] == RENAMED


def test_cards_without_sha256_do_not_share_an_entry(tmp_path, cache):
    import torch

    sample = resolve_weights(SAMPLE)
    bias = read_weights(sample)[0]["finalconv3.bias"].float() + 0.5
    bare = _resave(sample, tmp_path / "bare.safetensors", {"sha256": ""})
    other = _resave(sample, tmp_path / "other.safetensors", {"sha256": ""}, {"finalconv3.bias": bias.to(torch.float16)})
    entries = [export_cache_entry(bare), export_cache_entry(other)]
    assert entries[0].path != entries[1].path and entries[0].key != entries[1].key
    assert entries[0].card.sha256 == read_card(sample).sha256  # computed from the tensors, not skipped
    assert entries[1].card.sha256 not in ("", entries[0].card.sha256)


def test_weights_whose_tensors_do_not_match_their_card_are_refused_before_any_export(tmp_path, exports):
    damaged = tmp_path / "damaged.safetensors"
    data = bytearray(resolve_weights(SAMPLE).read_bytes())
    data[-100] ^= 0xFF
    damaged.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="damaged.safetensors: tensors do not match the sha256"):
        cached_export(damaged)
    assert exports == []


def test_a_damaged_swapped_or_unsealed_cache_file_is_exported_again(pair, exports, caplog):
    first, second = pair
    graph, other = cached_export(first), cached_export(second)
    sidecar = graph.with_name(graph.name + ".sha256")
    made = graph.read_bytes()

    def damage(how):
        how()
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="aerialseg.runners.onnx_runner"):
            assert cached_export(first) == graph
        assert graph.read_bytes() == made  # the right graph is back
        return caplog.text

    def flip():
        data = bytearray(graph.read_bytes())
        data[len(data) // 2] ^= 0xFF
        graph.write_bytes(bytes(data))

    def swap():  # another entry's graph together with its recorded hash
        shutil.copyfile(other, graph)
        shutil.copyfile(other.with_name(other.name + ".sha256"), sidecar)

    def recard():  # the right key and a valid recorded hash, but another card inside
        _graph(graph, {CARD_KEY: read_card(second).to_json(), CACHE_KEY: export_cache_entry(first).key})
        seal_cache_entry(graph)

    assert "bytes do not match the sha256 recorded" in damage(flip)
    assert "made for another key" in damage(swap)
    assert "model card differs from the weights'" in damage(recard)
    assert "no recorded sha256" in damage(sidecar.unlink)
    assert exports.count("first.safetensors") == 5


def test_int8_models_are_keyed_by_the_graph_bytes_and_verified(tmp_path, cache, monkeypatch, caplog):
    from aerialseg.runners import quantize

    made = []
    real = quantize._quantize
    monkeypatch.setattr(quantize, "_quantize", lambda *args: made.append(args[0]) or real(*args))
    card = read_card(resolve_weights(SAMPLE))
    fp32 = _graph(tmp_path / "model.onnx", {CARD_KEY: card.to_json(), PRECISION_KEY: "fp32"})
    tiles = [np.random.default_rng(k).random((3, 32, 32), dtype=np.float32) for k in range(3)]
    int8 = cached_int8(fp32, tiles)
    assert int8.parent == onnx_cache_dir() and cached_int8(fp32, tiles) == int8 and len(made) == 1
    meta = onnx_metadata(int8)
    assert meta[PRECISION_KEY] == "int8" and meta[CACHE_KEY] and read_card(int8) == card
    data = bytearray(int8.read_bytes())
    data[-1] ^= 0xFF
    int8.write_bytes(bytes(data))
    with caplog.at_level(logging.INFO, logger="aerialseg.runners.onnx_runner"):
        assert cached_int8(fp32, tiles) == int8
    assert len(made) == 2 and "bytes do not match" in caplog.text
    # another float32 graph at the same path, of the same size: its own int8 model
    size = fp32.stat().st_size
    _graph(fp32, {CARD_KEY: card.to_json(), PRECISION_KEY: "fp32"}, np.ones((6, 3, 1, 1), np.float32))
    assert fp32.stat().st_size == size
    assert cached_int8(fp32, tiles) != int8 and len(made) == 3
    assert cached_int8(fp32, tiles[:2]) != int8 and len(made) == 4  # other calibration pixels


@pytest.mark.slow
def test_the_onnx_backend_maps_with_the_card_it_is_given_not_a_stale_graph(pair, cache, cli, neon_tif, tmp_path):
    """Same tensors, another normalisation: the ONNX map must be PyTorch's for that card."""
    first, second = pair
    maps = {}
    for weights, backend in ((first, "onnx"), (second, "onnx"), (second, "torch")):
        out = tmp_path / f"{weights.stem}-{backend}.tif"
        argv = ["predict", str(neon_tif), "-m", str(weights), "-o", str(out), "--backend", backend]
        code, _, err = cli([*argv, "--device", "cpu", "--precision", "fp32"])
        assert code == 0, err
        with rasterio.open(out) as dst:
            maps[weights.stem, backend] = dst.read(1)
            if weights == second:
                assert json.loads(dst.tags(1)[CLASS_NAMES_TAG]) == RENAMED
    valid = maps["second", "torch"] != 255
    assert (maps["second", "onnx"] == maps["second", "torch"])[valid].mean() >= 0.999
    assert (maps["first", "onnx"] != maps["second", "onnx"])[valid].mean() > 0.05  # the card changes the map
    graphs = sorted(cache.glob("*.onnx"))
    assert len(graphs) == 2
    stamps = [g.stat().st_mtime_ns for g in graphs]
    cached_export(second)
    assert [g.stat().st_mtime_ns for g in graphs] == stamps  # verified and reused, not exported again


def test_a_graph_that_does_not_fit_its_card_or_cannot_load_is_one_error(tmp_path):
    from aerialseg.runners.onnx_runner import OnnxRunner

    card = read_card(resolve_weights(SAMPLE))
    five = card.replace(classes=card.classes[:5])
    with pytest.raises(WeightsError, match="five.onnx: graph does not fit its model card: it outputs 6 classes"):
        OnnxRunner(_graph(tmp_path / "five.onnx", {CARD_KEY: five.to_json()}), "cpu")
    (tmp_path / "junk.onnx").write_bytes(b"\x1b[2J" * 10)
    with pytest.raises(WeightsError, match="junk.onnx: ONNX Runtime cannot load this graph") as info:
        OnnxRunner(tmp_path / "junk.onnx", "cpu")
    assert str(info.value).isprintable()
    assert OnnxRunner(_graph(tmp_path / "six.onnx", {CARD_KEY: card.to_json()}), "cpu").card == card
