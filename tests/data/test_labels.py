"""Colour and id labels to class ids: the tables of §2.1, errors that name colour, count and file, tolerance."""

from __future__ import annotations

import numpy as np
import pytest

from aerialseg.data.labels import LabelTable, dataset_table, read_folder_classes
from aerialseg.errors import DatasetLayoutError, LabelColourError

ISPRS = {
    (255, 255, 255): 0,
    (0, 0, 255): 1,
    (0, 255, 255): 2,
    (0, 255, 0): 3,
    (255, 255, 0): 4,
    (255, 0, 0): 5,
    (0, 0, 0): 255,
}
UAVID = {
    (128, 0, 0): 0,
    (128, 64, 128): 1,
    (0, 128, 0): 2,
    (128, 128, 0): 3,
    (64, 0, 128): 4,
    (192, 0, 192): 5,
    (64, 64, 0): 6,
    (0, 0, 0): 7,
    (255, 255, 255): 255,
}


def image_of(table, shape=(37, 53), seed=0):
    """A random label image (3, H, W) drawn from a colour table, and its ids by a per-pixel loop."""
    rng = np.random.default_rng(seed)
    keys = list(table)
    picks = rng.integers(0, len(keys), shape)
    rgb = np.array(keys, np.uint8)[picks].transpose(2, 0, 1)
    ids = np.array([[table[tuple(int(v) for v in rgb[:, r, c])] for c in range(shape[1])] for r in range(shape[0])])
    return rgb, ids.astype(np.uint8)


@pytest.mark.parametrize("dataset, table", [("potsdam", ISPRS), ("vaihingen", ISPRS), ("uavid", UAVID)])
def test_dataset_tables_match_the_official_colours(dataset, table):
    rgb, ids = image_of(table)
    np.testing.assert_array_equal(dataset_table(dataset).to_ids(rgb), ids)


def test_rgba_labels_ignore_alpha_and_single_band_ids_pass_through():
    rgb, ids = image_of(ISPRS)
    rgba = np.concatenate([rgb, np.full((1, *ids.shape), 255, np.uint8)])
    table = dataset_table("potsdam")
    np.testing.assert_array_equal(table.to_ids(rgba), ids)
    np.testing.assert_array_equal(table.to_ids(ids[None]), ids)
    np.testing.assert_array_equal(table.to_ids(ids[None].astype(np.uint16)), ids)


def test_unknown_colour_names_colour_count_file_and_rows():
    rgb, _ = image_of(ISPRS)
    rgb[:, 2:4, 5:10] = np.array([12, 34, 56], np.uint8)[:, None, None]
    rgb[:, 30, 0] = (1, 2, 3)
    with pytest.raises(LabelColourError) as info:
        dataset_table("potsdam").to_ids(rgb, path="tiles/label.tif", rows=(512, 548))
    message = str(info.value)
    assert message.startswith("tiles/label.tif: colour not in the potsdam table: (12, 34, 56) in 10 pixels, (1, 2, 3)")
    assert "of rows 512-548" in message and "(0, 0, 255)=1" in message


def test_tolerance_snaps_to_the_nearest_colour_within_reach():
    rgb, ids = image_of(UAVID)
    noise = np.random.default_rng(1).integers(-5, 6, rgb.shape)
    noisy = (rgb.astype(np.int16) + noise).clip(0, 255).astype(np.uint8)
    table = dataset_table("uavid")
    with pytest.raises(LabelColourError):
        table.to_ids(noisy, tolerance=4)
    np.testing.assert_array_equal(table.to_ids(noisy, tolerance=5), ids)


def test_max_tolerance_keeps_colours_unambiguous():
    assert dataset_table("potsdam").max_tolerance() == 127  # ISPRS colours differ by 255 in some channel
    assert dataset_table("uavid").max_tolerance() == 31  # (64, 64, 0) vs (128, 128, 0): 64 apart


def test_single_band_values_out_of_the_table_are_errors():
    ids = np.zeros((1, 4, 4), np.uint8)
    ids[0, 0, :3] = 6
    with pytest.raises(LabelColourError, match="label value not in the vaihingen table: 6 in 3 pixels"):
        dataset_table("vaihingen").to_ids(ids, path="x.tif")
    with pytest.raises(LabelColourError, match="outside 0-255"):
        dataset_table("vaihingen").to_ids(np.full((1, 2, 2), 300, np.int32))
    with pytest.raises(LabelColourError, match="label has 2 bands"):
        dataset_table("vaihingen").to_ids(np.zeros((2, 2, 2), np.uint8))


def test_custom_value_table_remaps_ids():
    table = LabelTable("t", 2, (((1, 1, 1), 0), ((2, 2, 2), 1)), ((10, 1), (20, 0), (0, 255)))
    np.testing.assert_array_equal(table.to_ids(np.array([[[10, 20, 0]]], np.uint8)), [[1, 0, 255]])
    with pytest.raises(LabelColourError, match="known values: 0, 10, 20"):
        table.to_ids(np.array([[[255]]], np.uint8))


def test_folder_classes_from_toml(tmp_path):
    path = tmp_path / "classes.toml"
    path.write_text(
        'bands = ["NIR", "R", "G"]\ngsd_m = 0.2\nignore = 9\n'
        '[[classes]]\nname = "roof"\ncolor = [200, 0, 0]\nid = 7\n'
        '[[classes]]\nname = "road"\ncolor = [90, 90, 90]\nid = 3\nin_mean = false\n'
    )
    spec = read_folder_classes(path)
    assert [c.name for c in spec.classes] == ["roof", "road"] and spec.classes[1].in_mean is False
    assert spec.bands == ("NIR", "R", "G") and spec.gsd_m == 0.2
    values = np.array([[[7, 3, 9, 255]]], np.uint8)
    np.testing.assert_array_equal(spec.table.to_ids(values), [[0, 1, 255, 255]])
    rgb = np.array([[200, 90], [0, 90], [0, 90]], np.uint8)[:, None, :]
    np.testing.assert_array_equal(spec.table.to_ids(rgb), [[0, 1]])


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "needs at least one [[classes]] entry"),
        ('[[classes]]\nname = "a"\ncolor = [1, 2]\n', "class 'a' color must be [R, G, B]"),
        ('[[classes]]\nname = "a"\n', "a class entry lacks 'color'"),
        ('[[classes]]\nname = "a"\ncolor = [1, 2, 3]\n[[classes]]\nname = "a"\ncolor = [3, 2, 1]\n', "names repeat"),
        (
            '[[classes]]\nname = "a"\ncolor = [1, 2, 3]\nid = 1\n[[classes]]\nname = "b"\ncolor = [3, 2, 1]\n',
            "give every class an id, or none",
        ),
        ('ignore = [1, 2, 3]\n[[classes]]\nname = "a"\ncolor = [1, 2, 3]\n', "colour (1, 2, 3) is given twice"),
        ('bands = ["RED"]\n[[classes]]\nname = "a"\ncolor = [1, 2, 3]\n', "unknown band codes ['RED']"),
        ("[[classes]\n", "is not valid TOML"),
    ],
)
def test_folder_classes_errors_name_the_file(tmp_path, text, message):
    path = tmp_path / "classes.toml"
    path.write_text(text)
    with pytest.raises(DatasetLayoutError) as info:
        read_folder_classes(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)
