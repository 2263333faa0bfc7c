from __future__ import annotations

import json

import pytest

from aerialseg.card import ClassInfo, ModelCard
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
