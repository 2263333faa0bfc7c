"""ONNX export: parity with PyTorch on real imagery, metadata other tools read, refusal on disagreement."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import rasterio
import torch

from aerialseg.card import ModelCard
from aerialseg.data.classes import DATASETS
from aerialseg.errors import ExportParityError, OutputExistsError
from aerialseg.export import export_onnx, parity_inputs
from aerialseg.onnxrt import open_session
from aerialseg.weights import load_model


def _weights(make_weights, tmp_path, arch, backbone, dataset="vaihingen"):
    return make_weights(
        tmp_path / f"{arch}-{backbone}.safetensors",
        arch,
        backbone,
        dataset,
        tile_size=512,
        overlap=64,
        gsd_m=DATASETS[dataset].gsd_m,
    )


def _real_tile(path, size=None):
    with rasterio.open(path) as src:
        data = src.read().astype(np.float32) / 255
    if size:
        data = data[:, : size[0], : size[1]]
    return data[None]


@pytest.mark.slow
@pytest.mark.parametrize("arch, backbone", [("manet", "resnet18"), ("maresunet", "resnet18"), ("abcnet", "resnet18")])
def test_export_agrees_with_pytorch_on_real_tiles(make_weights, tmp_path, arch, backbone, vaihingen_png):
    weights = _weights(make_weights, tmp_path, arch, backbone)
    result = export_onnx(weights, tmp_path / "model.onnx")
    assert result.exporter == "dynamo" and result.opset == 18
    assert [c.shape for c in result.checks] == [(1, 3, 256, 384), (2, 3, 200, 200)]
    assert result.max_abs_diff <= 1e-3 and result.agreement >= 0.999

    # Independently of the gate: a real Vaihingen IRRG patch at a size the gate did not use.
    model, card = load_model(weights)
    tile = _real_tile(vaihingen_png, (320, 448))
    mean = np.array(card.mean, np.float32)[:, None, None]
    std = np.array(card.std, np.float32)[:, None, None]
    with torch.inference_mode():
        expected = torch.softmax(model(torch.from_numpy((tile - mean) / std)), 1).numpy()
    got = open_session(result.path).run(None, {"image": tile})[0]
    assert np.abs(got - expected).max() < 1e-4
    assert (got.argmax(1) == expected.argmax(1)).mean() > 0.999

    graph = onnx.load(str(result.path))
    assert len(graph.graph.initializer) > 0 and not any(
        t.data_location == onnx.TensorProto.EXTERNAL for t in graph.graph.initializer
    )
    dims = [d.dim_param or d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    for node in graph.graph.node:
        if node.op_type == "Transpose":
            assert all(p >= 0 for a in node.attribute if a.name == "perm" for p in a.ints)


def test_metadata_is_what_qgis_deepness_and_geodeep_read(make_weights, tmp_path):
    weights = _weights(make_weights, tmp_path, "abcnet", "resnet18")
    result = export_onnx(weights, tmp_path / "m.onnx", opset=17, static_size=512)
    session = open_session(result.path)
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["model_type"]) == "Segmentor"
    names = json.loads(meta["class_names"])
    assert [names[str(i)] for i in range(len(names))] == [c.name for c in DATASETS["vaihingen"].classes]
    assert json.loads(meta["resolution"]) == pytest.approx(9.0)  # cm per pixel
    assert json.loads(meta["tile_size"]) == 512 and json.loads(meta["tiles_overlap"]) == 12  # percent
    assert json.loads(meta["standardization_mean"]) == [0.0, 0.0, 0.0]
    assert ModelCard.from_json(meta["aerialseg.card"]).bands == ("NIR", "R", "G")
    assert session.get_inputs()[0].shape[1:] == [3, 512, 512]  # GeoDeep reads the tile size here
    assert len(session.get_outputs()) == 1
    out = session.run(None, {"image": parity_inputs(load_model(weights)[1], static_size=512)[1]})[0]
    np.testing.assert_allclose(out.sum(1), 1.0, atol=1e-5)  # probabilities, as Deepness thresholds them


def test_torchscript_exporter_for_older_opsets_with_logits(make_weights, tmp_path, neon_tif):
    weights = _weights(make_weights, tmp_path, "manet", "resnet18", dataset="potsdam")
    result = export_onnx(weights, tmp_path / "m17.onnx", opset=17, output="logits", parity_image=neon_tif)
    assert result.exporter == "torchscript"
    assert result.max_abs_diff <= 1e-2 and result.agreement >= 0.999
    assert onnx.load(str(result.path)).opset_import[0].version == 17


@pytest.mark.slow
def test_fp16_export_halves_the_file_and_keeps_the_map(make_weights, tmp_path):
    weights = _weights(make_weights, tmp_path, "abcnet", "resnet18")
    full = export_onnx(weights, tmp_path / "fp32.onnx", opset=17)
    half = export_onnx(weights, tmp_path / "fp16.onnx", fp16=True)
    assert half.size_bytes < 0.6 * full.size_bytes
    assert half.agreement >= 0.99


def test_disagreement_refuses_to_write_and_reports_the_numbers(make_weights, tmp_path):
    weights = _weights(make_weights, tmp_path, "abcnet", "resnet18")
    target = tmp_path / "never.onnx"
    with pytest.raises(ExportParityError) as info:
        export_onnx(weights, target, opset=17, max_abs_diff=1e-12)
    message = str(info.value)
    assert "max |probabilities difference|" in message and "limit 1e-12" in message and "agreement" in message
    assert list(tmp_path.glob("*.onnx")) == []


def test_existing_output_is_refused_before_any_work(make_weights, tmp_path):
    weights = _weights(make_weights, tmp_path, "abcnet", "resnet18")
    (tmp_path / "m.onnx").write_bytes(b"keep me")
    with pytest.raises(OutputExistsError):
        export_onnx(weights, tmp_path / "m.onnx")
    assert (tmp_path / "m.onnx").read_bytes() == b"keep me"


def test_parity_inputs_cover_model_bands_from_any_raster(tmp_path):
    info = DATASETS["potsdam"]
    card = ModelCard(
        arch="abcnet",
        backbone="resnet18",
        classes=info.classes,
        bands=("R", "G", "B", "NIR"),
        mean=(0.5,) * 4,
        std=(0.2,) * 4,
    )
    batches = parity_inputs(card, static_size=1024)  # larger than the 400 px image: mirrored
    assert [b.shape for b in batches] == [(1, 4, 1024, 1024), (2, 4, 1024, 1024)]
    assert all(0 <= b.min() and b.max() <= 1 for b in batches)
    assert np.array_equal(batches[0][0, 3], batches[0][0, 0])  # 4th band cycles back to the first
    assert not np.array_equal(batches[1][0], batches[1][1])  # batch items differ
