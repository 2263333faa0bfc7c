from __future__ import annotations

import json
import struct
import subprocess
import sys

import pytest

from aerialseg.card import ClassInfo, ModelCard, read_card
from aerialseg.conventions import CARD_KEY, PRECISION_KEY
from aerialseg.data.classes import DATASETS, generic_classes
from aerialseg.errors import WeightsError


def _card(**changes):
    info = DATASETS["vaihingen"]
    fields = dict(arch="manet", backbone="resnet50", classes=info.classes, bands=info.bands, gsd_m=info.gsd_m)
    return ModelCard(**(fields | changes))


def test_json_round_trip_is_lossless_and_stable():
    card = _card(metrics={"mIoU": 82.7, "per_class_f1": [93.0, 95.5]}, training="105 epochs", dataset="vaihingen")
    text = card.to_json()
    again = ModelCard.from_json(text)
    assert again == card
    assert again.to_json() == text
    assert json.loads(text)["classes"][5] == {"name": "clutter", "color": [255, 0, 0], "in_mean": False}


def test_vaihingen_card_describes_false_colour_bands_and_clutter_outside_the_means():
    card = _card()
    assert card.bands == ("NIR", "R", "G")
    assert card.num_classes == 6
    assert [c.name for c in card.classes if not c.in_mean] == ["clutter"]


@pytest.mark.parametrize(
    "changes, problem",
    [
        (dict(classes=()), "no classes"),
        (dict(bands=("R", "G", "X")), "unknown band codes"),
        (dict(mean=(0.5,)), "one value per band"),
        (dict(std=(0.2, 0.0, 0.2)), "positive"),
        (dict(tile_size=256, overlap=256), "overlap"),
        (dict(classes=(ClassInfo("a", (0, 0, 300)),)), "not RGB"),
        (dict(classes=(ClassInfo("a", (0, 0, 0)), ClassInfo("a", (1, 1, 1)))), "repeat"),
    ],
)
def test_invalid_cards_are_refused_with_the_reason(changes, problem):
    with pytest.raises(WeightsError, match=problem):
        _card(**changes)


def test_unknown_fields_and_newer_schemas_are_refused():
    data = _card().to_dict()
    with pytest.raises(WeightsError, match="unknown fields"):
        ModelCard.from_dict(data | {"colour_space": "srgb"})
    with pytest.raises(WeightsError, match="newer"):
        ModelCard.from_dict(data | {"schema": 99})
    with pytest.raises(WeightsError, match="not valid JSON"):
        ModelCard.from_json("{")


def test_generic_classes_have_distinct_colours():
    classes = generic_classes(12)
    assert len({c.color for c in classes}) == 12
    assert classes[0].name == "class_0"


def _safetensors_with(metadata, path):
    """A safetensors file holding one tensor, written byte by byte (no torch)."""
    header = json.dumps({"__metadata__": metadata, "x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})
    path.write_bytes(struct.pack("<Q", len(header)) + header.encode() + b"\0\0\0\0")
    return path


def _onnx_with(metadata, path):
    import onnx
    from onnx import TensorProto, helper

    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 4, 4])
    output = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 4, 4])
    model = helper.make_model(
        helper.make_graph([helper.make_node("Identity", ["image"], ["output"])], "g", [image], [output])
    )
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


def test_one_reader_for_weights_and_exported_graphs(tmp_path):
    card = _card()
    weights = _safetensors_with({CARD_KEY: card.to_json()}, tmp_path / "w.safetensors")
    graph = _onnx_with({CARD_KEY: card.to_json(), PRECISION_KEY: "fp16"}, tmp_path / "w.onnx")
    assert read_card(weights) == card
    assert read_card(graph) == card


def test_missing_or_damaged_cards_name_the_file_and_the_fix(tmp_path):
    with pytest.raises(WeightsError, match="w.safetensors: has no aerialseg model card.*weights import"):
        read_card(_safetensors_with({}, tmp_path / "w.safetensors"))
    with pytest.raises(WeightsError, match="w.onnx: ONNX file has no aerialseg model card.*aerialseg export"):
        read_card(_onnx_with({}, tmp_path / "w.onnx"))
    with pytest.raises(WeightsError, match="bad.onnx: model card is not valid JSON"):
        read_card(_onnx_with({CARD_KEY: "{"}, tmp_path / "bad.onnx"))
    (tmp_path / "junk.onnx").write_bytes(b"\xff" * 64)
    with pytest.raises(WeightsError, match="junk.onnx: not a readable ONNX file"):
        read_card(tmp_path / "junk.onnx")
    with pytest.raises(WeightsError, match="cannot read"):
        read_card(tmp_path / "absent.safetensors")


def test_reading_a_card_does_not_import_torch(tmp_path):
    path = _safetensors_with({CARD_KEY: _card().to_json()}, tmp_path / "w.safetensors")
    code = f"import sys; from aerialseg.card import read_card; read_card({str(path)!r}); print('torch' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        == "False"
    )
