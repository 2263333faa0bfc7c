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
    with pytest.raises(
        WeightsError, match="w.onnx: ONNX file has neither an aerialseg model card nor Deepness.*aerialseg export"
    ):
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


SAMPLE_WEIGHTS = "manet-r18-potsdam-sample"


@pytest.fixture(scope="module")
def sample_parts():
    """The sample weights file's header (a dict) and data section, read once."""
    from aerialseg.weights import resolve_weights

    raw = resolve_weights(SAMPLE_WEIGHTS).read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + size]), raw[8 + size :]


@pytest.fixture
def sample_copy(tmp_path, sample_parts):
    """``sample_copy(name, card=..., header=..., data=...)``: a copy of the sample weights with parts replaced."""

    def write(name, card=None, header=None, data=None):
        original, tensors = sample_parts
        header = dict(original) if header is None else header
        if card is not None:
            header["__metadata__"] = {CARD_KEY: card if isinstance(card, str) else json.dumps(card)}
        text = json.dumps(header).encode()
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(struct.pack("<Q", len(text)) + text + (tensors if data is None else data))
        return path

    return write


def _sample_card(sample_parts, **changes):
    return json.loads(sample_parts[0]["__metadata__"][CARD_KEY]) | changes


ESCAPE = "\x1b[2J\x1b[31mbuilding\x07"


@pytest.mark.parametrize(
    "changes, words",
    [
        (dict(classes=5), 'field "classes" must be a list of classes, not 5'),
        (dict(tile_size="big"), 'field "tile_size" must be an integer, not "big"'),
        (dict(pixel_max=float("nan")), 'field "pixel_max" must be a finite number, not NaN'),
        (dict(mean=[0.5, "x", 0.5]), 'field "mean" must be a list of finite numbers'),
        (dict(schema="1"), 'field "schema" must be an integer'),
        (dict(overlap=True), 'field "overlap" must be an integer, not true'),
        (dict(classes=[{"name": "a"}]), 'classes[0] must be {"name": text, "color": [r, g, b]'),
        (dict(classes=[{"name": ESCAPE, "color": [0, 0, 255]}] * 6), "class names ["),
        (dict(dataset=ESCAPE), "dataset holds control characters"),
        ({ESCAPE: 1}, "unknown fields"),
        (dict(sha256="feed"), "sha256 is not 64 lowercase hexadecimal digits"),
    ],
)
def test_malformed_cards_are_one_line_naming_the_file_without_control_characters(
    sample_copy, sample_parts, changes, words
):
    path = sample_copy("bad", card=_sample_card(sample_parts, **changes))
    with pytest.raises(WeightsError) as info:
        read_card(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and words in message, message
    assert message.isprintable(), message  # no escape codes reach a terminal


def test_a_card_without_a_required_field_is_refused(sample_copy, sample_parts):
    card = _sample_card(sample_parts)
    del card["arch"]
    with pytest.raises(WeightsError, match=r"bad.safetensors: model card lacks the fields arch"):
        read_card(sample_copy("bad", card=card))


def test_a_card_must_fit_the_tensors_shapes(sample_copy, sample_parts):
    card = _sample_card(sample_parts)
    five = sample_copy("five", card=card | {"classes": card["classes"][:5]})
    with pytest.raises(WeightsError, match="lists 5 classes but finalconv3.weight has 6 output channels"):
        read_card(five)
    four = card | {"bands": ["R", "G", "B", "NIR"], "mean": [0.5] * 4, "std": [0.2] * 4}
    with pytest.raises(WeightsError, match="lists 4 bands but backbone.conv1.weight reads 3"):
        read_card(sample_copy("four", card=four))


def test_damaged_safetensors_headers_are_one_line(sample_copy, sample_parts):
    header, data = sample_parts
    name = next(k for k in header if k != "__metadata__")
    cases = {
        "cut": (None, data[:-1000], "truncated"),
        "list": ([1, 2], None, "header is not a JSON object"),
        "meta": (header | {"__metadata__": {CARD_KEY: 5}}, None, "__metadata__ is not an object of strings"),
        "dtype": (header | {name: header[name] | {"dtype": "X9"}}, None, "damaged safetensors header"),
        "offsets": (header | {name: header[name] | {"data_offsets": [0, 3]}}, None, "damaged safetensors header"),
    }
    for label, (new_header, new_data, words) in cases.items():
        path = sample_copy(label, header=new_header, data=new_data)
        with pytest.raises(WeightsError) as info:
            read_card(path)
        assert str(info.value).startswith(f"{path}: ") and words in str(info.value), (label, str(info.value))
