"""`prepare_dataset` / `prepare_folder` on miniature archives in the official layouts.

The archives are built in tmp_path at test time from the real ISPRS sample patches in
../shared (their terms forbid copying them into the repository). The mmseg annotations are
eroded (0 = boundary, 1..6 = classes): the full labels written here give boundary pixels
class 0 (impervious surfaces), the eroded `_noBoundary` labels keep them black. Every
expected value below is computed from the annotation itself, not from aerialseg.
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from hypothesis import given
from hypothesis import strategies as st
from rasterio.transform import from_origin

from aerialseg.data.manifest import Manifest
from aerialseg.data.prepare import patch_starts, prepare_dataset, prepare_folder
from aerialseg.errors import DatasetLayoutError, LabelColourError, OutputExistsError


def read(path):
    with rasterio.open(path) as src:
        return src.read(), src.transform, src.crs


@pytest.fixture(scope="module")
def potsdam(isprs_sample, tmp_path_factory, isprs_files):
    root = tmp_path_factory.mktemp("raw")
    tiles = isprs_files.archive(isprs_sample, root, "potsdam")
    out = tmp_path_factory.mktemp("prepared") / "potsdam"
    return tiles, root, prepare_dataset("potsdam", root, out, patch_size=128)


def test_potsdam_splits_by_tile_id_and_excludes_7_10(potsdam):
    _, root, manifest = potsdam
    assert {name: s.tiles for name, s in manifest.splits.items()} == {
        "train": ("2_11",),
        "val": ("2_10",),
        "test": ("2_13",),
    }
    assert manifest.sources["excluded_tiles"] == ["7_10"]
    assert manifest.sources["image_kind"] == "RGB" and manifest.bands == ("R", "G", "B")
    assert manifest.sources["recognised_files"] == 16  # 4 tiles x (RGB, RGBIR, label, noBoundary)
    assert all(s.has_eroded for s in manifest.splits.values())
    assert not any(p.name.startswith(".") for p in manifest.folder.parent.iterdir())  # staging renamed away


def test_potsdam_patches_and_scenes_round_trip_the_annotation(potsdam, isprs_files):
    tiles, _, manifest = potsdam
    for split in manifest.splits.values():
        (tile,) = split.tiles
        image, ann, (r0, c0) = tiles[tile]
        assert split.patches == tuple(f"{tile}_{r}_{c}" for r in (0, 128) for c in (0, 128))
        for (img_path, lab_path), (_, ero_path), name in zip(
            manifest.patch_pairs(split.name), manifest.patch_pairs(split.name, eroded=True), split.patches, strict=True
        ):
            r, c = (int(v) for v in name.split("_")[-2:])
            window = (slice(r, r + 128), slice(c, c + 128))
            pixels, transform, crs = read(img_path)
            np.testing.assert_array_equal(pixels, image[:, window[0], window[1]])
            np.testing.assert_array_equal(read(lab_path)[0][0], isprs_files.full_ids(ann)[window])
            np.testing.assert_array_equal(read(ero_path)[0][0], isprs_files.eroded_ids(ann)[window])
            assert crs == "EPSG:32633"
            assert transform == from_origin(
                isprs_files.ORIGIN[0] + (c0 + c) * isprs_files.GSD,
                isprs_files.ORIGIN[1] - (r0 + r) * isprs_files.GSD,
                isprs_files.GSD,
                isprs_files.GSD,
            )
        (scene,) = split.scenes
        assert scene.image == manifest.sources["root"] + f"/2_Ortho_RGB/top_potsdam_{tile}_RGB.tif"
        labels, transform, crs = read(manifest.resolve(scene.label))
        np.testing.assert_array_equal(labels[0], isprs_files.full_ids(ann))
        np.testing.assert_array_equal(read(manifest.resolve(scene.label_eroded))[0][0], isprs_files.eroded_ids(ann))
        assert (
            transform
            == from_origin(
                isprs_files.ORIGIN[0] + c0 * isprs_files.GSD,
                isprs_files.ORIGIN[1] - r0 * isprs_files.GSD,
                isprs_files.GSD,
                isprs_files.GSD,
            )
            and crs == "EPSG:32633"
        )


def test_potsdam_class_pixels_equal_bincount_of_the_annotation(potsdam):
    tiles, _, manifest = potsdam
    for split in manifest.splits.values():
        counts = np.bincount(tiles[split.tiles[0]][1].ravel(), minlength=7)
        expected = [counts[0] + counts[1], *counts[2:7]]  # boundary pixels are impervious in the full labels
        assert split.class_pixels == tuple(int(v) for v in expected) and split.ignored_pixels == 0


def test_manifest_round_trips_through_load(potsdam):
    manifest = potsdam[2]
    loaded = Manifest.load(manifest.folder)
    assert loaded == manifest
    assert loaded.created.endswith("+00:00") and loaded.aerialseg_version


def test_potsdam_rgbir_writes_four_bands(isprs_sample, tmp_path, isprs_files):
    tiles = isprs_files.archive(isprs_sample, tmp_path / "raw", "potsdam")
    manifest = prepare_dataset("potsdam", tmp_path / "raw", tmp_path / "out", patch_size=256, image_kind="rgbir")
    assert manifest.bands == ("R", "G", "B", "NIR") and manifest.sources["image_kind"] == "RGBIR"
    image_path = manifest.patch_pairs("val")[0][0]
    with rasterio.open(image_path) as src:
        assert src.descriptions == ("R", "G", "B", "NIR")
        np.testing.assert_array_equal(src.read(4), 255 - tiles["2_10"][0][0])
    assert manifest.splits["val"].scenes[0].image.endswith("top_potsdam_2_10_RGBIR.tif")


@pytest.mark.parametrize(
    "folders",
    [
        (
            "top",
            "ISPRS_semantic_labeling_Vaihingen_ground_truth_COMPLETE",
            "ISPRS_semantic_labeling_Vaihingen_ground_truth_eroded_COMPLETE",
        ),
        ("top", "gts_for_participants", "gts_eroded_for_participants"),
    ],
)
def test_vaihingen_tells_labels_from_images_by_folder(isprs_sample, tmp_path, folders, isprs_files):
    tiles = isprs_files.archive(isprs_sample, tmp_path / "raw", "vaihingen", vaihingen_folders=folders)
    manifest = prepare_dataset("vaihingen", tmp_path / "raw", tmp_path / "out", patch_size=128, stride=128)
    assert {name: s.tiles for name, s in manifest.splits.items()} == {
        "train": ("area1",),
        "val": ("area30",),
        "test": ("area2",),
    }
    assert manifest.sources["unassigned_tiles"] == ["area39"] and manifest.bands == ("NIR", "R", "G")
    image, ann, _ = tiles["area30"]
    scene = manifest.splits["val"].scenes[0]
    assert "ISPRS_semantic_labeling_Vaihingen/top/" in scene.image
    np.testing.assert_array_equal(read(manifest.resolve(scene.label))[0][0], isprs_files.full_ids(ann))
    np.testing.assert_array_equal(read(manifest.resolve(scene.label_eroded))[0][0], isprs_files.eroded_ids(ann))
    img_path, lab_path = manifest.patch_pairs("val")[-1]
    np.testing.assert_array_equal(read(img_path)[0], image[:, 128:, 128:])
    np.testing.assert_array_equal(read(lab_path)[0][0], isprs_files.full_ids(ann)[128:, 128:])


def test_last_window_shifts_inward_and_small_tiles_are_padded(isprs_sample, tmp_path, isprs_files):
    image, ann = isprs_sample("vaihingen")
    gt = tmp_path / "raw" / "gt"
    shapes = {"area1": (200, 300), "area3": (100, 90)}  # one taller/wider than a patch, one smaller
    for tile, (h, w) in shapes.items():
        isprs_files.write(tmp_path / "raw" / "top" / f"top_mosaic_09cm_{tile}.tif", image[:, :h, :w])
        isprs_files.write(gt / f"top_mosaic_09cm_{tile}.tif", isprs_files.colours(isprs_files.full_ids(ann[:h, :w])))
    manifest = prepare_dataset("vaihingen", tmp_path / "raw", tmp_path / "out", patch_size=128)
    train = manifest.splits["train"]
    assert train.patches == (
        *(f"area1_{r}_{c}" for r in (0, 72) for c in (0, 128, 172)),
        "area3_0_0",
    )
    counts = np.zeros(256, np.int64)
    for (img_path, lab_path), name in zip(manifest.patch_pairs("train"), train.patches, strict=True):
        tile, r, c = name.rsplit("_", 2)
        h, w = shapes[tile]
        r, c = int(r), int(c)
        expected_img = np.zeros((3, 128, 128), np.uint8)
        expected_lab = np.full((128, 128), 255, np.uint8)
        crop = (slice(r, min(r + 128, h)), slice(c, min(c + 128, w)))
        rows, cols = crop[0].stop - r, crop[1].stop - c
        expected_img[:, :rows, :cols] = image[:, crop[0], crop[1]]
        expected_lab[:rows, :cols] = isprs_files.full_ids(ann)[crop]
        pixels, transform, _ = read(img_path)
        np.testing.assert_array_equal(pixels, expected_img)
        np.testing.assert_array_equal(read(lab_path)[0][0], expected_lab)
        assert transform == from_origin(
            isprs_files.ORIGIN[0] + c * isprs_files.GSD,
            isprs_files.ORIGIN[1] - r * isprs_files.GSD,
            isprs_files.GSD,
            isprs_files.GSD,
        )
        counts += np.bincount(expected_lab.ravel(), minlength=256)
    assert train.class_pixels == tuple(int(v) for v in counts[:6]) and train.ignored_pixels == counts[255]
    assert not train.has_eroded and manifest.splits["val"].tiles == ()


@given(st.integers(1, 700), st.integers(1, 300), st.integers(1, 400))
def test_patch_starts_cover_every_pixel_and_stay_inside(length, size, stride):
    starts = patch_starts(length, size, stride)
    assert starts[0] == 0 and starts == sorted(set(starts))
    if length <= size:
        assert starts == [0]
    else:
        assert starts[-1] + size == length and all(s + size <= length for s in starts)
        assert all(b - a <= stride for a, b in zip(starts, starts[1:], strict=False))
        if stride <= size:
            covered = np.zeros(length, bool)
            for s in starts:
                covered[s : s + size] = True
            assert covered.all()


def test_unknown_colour_names_colour_and_file_and_leaves_nothing(isprs_sample, tmp_path, isprs_files):
    isprs_files.archive(isprs_sample, tmp_path / "raw", "potsdam")
    label = tmp_path / "raw" / "5_Labels_all" / "top_potsdam_2_10_label.tif"
    with rasterio.open(label, "r+") as dst:
        rgb = dst.read()
        rgb[:, 10:14, 20:25] = np.array([12, 34, 56], np.uint8)[:, None, None]
        dst.write(rgb)
    with pytest.raises(LabelColourError) as info:
        prepare_dataset("potsdam", tmp_path / "raw", tmp_path / "out", patch_size=128)
    message = str(info.value)
    assert "(12, 34, 56) in 20 pixels" in message and str(label) in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]


def test_colour_tolerance_snaps_noisy_labels(isprs_sample, tmp_path, isprs_files):
    tiles = isprs_files.archive(isprs_sample, tmp_path / "raw", "potsdam")
    noise = np.random.default_rng(0)
    for path in (tmp_path / "raw" / "5_Labels_all").glob("*.tif"):
        with rasterio.open(path, "r+") as dst:
            rgb = dst.read().astype(np.int16) + noise.integers(-3, 4, (3, 256, 256))
            dst.write(rgb.clip(0, 255).astype(np.uint8))
    with pytest.raises(LabelColourError):
        prepare_dataset("potsdam", tmp_path / "raw", tmp_path / "out", patch_size=256)
    manifest = prepare_dataset("potsdam", tmp_path / "raw", tmp_path / "out", patch_size=256, colour_tolerance=3)
    scene = manifest.splits["train"].scenes[0]
    np.testing.assert_array_equal(read(manifest.resolve(scene.label))[0][0], isprs_files.full_ids(tiles["2_11"][1]))


def test_output_folder_needs_overwrite(isprs_sample, tmp_path, isprs_files):
    isprs_files.archive(isprs_sample, tmp_path / "raw", "potsdam")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("x")
    with pytest.raises(OutputExistsError, match="pass --overwrite"):
        prepare_dataset("potsdam", tmp_path / "raw", tmp_path / "out", patch_size=256)
    manifest = prepare_dataset("potsdam", tmp_path / "raw", tmp_path / "out", patch_size=256, overwrite=True)
    assert not (tmp_path / "out" / "old.txt").exists() and Manifest.load(tmp_path / "out") == manifest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "raw"]


def remove(path_in_root):
    def action(root):
        (root / path_in_root).unlink()

    return action


def second_train_tile_without_eroded_label(root):
    for folder, kind in (("2_Ortho_RGB", "RGB"), ("5_Labels_all", "label")):
        source = root / folder / f"top_potsdam_2_11_{kind}.tif"
        (root / folder / f"top_potsdam_2_12_{kind}.tif").write_bytes(source.read_bytes())


def duplicate(root):
    (root / "copy").mkdir()
    (root / "copy" / "top_potsdam_2_11_RGB.tif").write_bytes(
        (root / "2_Ortho_RGB" / "top_potsdam_2_11_RGB.tif").read_bytes()
    )


@pytest.mark.parametrize(
    "damage, kind, message",
    [
        (
            remove("5_Labels_all/top_potsdam_2_13_label.tif"),
            None,
            "_2_13_RGB.tif: image of potsdam tile 2_13 (test split) has no label",
        ),
        (second_train_tile_without_eroded_label, None, "train tile 2_12 has no eroded (noBoundary) label while 2_11"),
        (duplicate, None, "potsdam tile 2_11 has a second image file"),
        (lambda root: None, "IRRG", "no potsdam images of kind IRRG found (16 files recognised)"),
    ],
)
def test_layout_errors_name_the_file(isprs_sample, tmp_path, damage, kind, message, isprs_files):
    isprs_files.archive(isprs_sample, tmp_path / "raw", "potsdam")
    damage(tmp_path / "raw")
    with pytest.raises(DatasetLayoutError) as info:
        prepare_dataset("potsdam", tmp_path / "raw", tmp_path / "out", patch_size=256, image_kind=kind)
    assert message in str(info.value)
    assert not (tmp_path / "out").exists()


def test_a_split_without_eroded_labels_has_none(isprs_sample, tmp_path, isprs_files):
    isprs_files.archive(isprs_sample, tmp_path / "raw", "potsdam")
    (tmp_path / "raw" / "5_Labels_all_noBoundary" / "top_potsdam_2_10_label_noBoundary.tif").unlink()
    manifest = prepare_dataset("potsdam", tmp_path / "raw", tmp_path / "out", patch_size=256)
    assert {n: s.has_eroded for n, s in manifest.splits.items()} == {"train": True, "val": False, "test": True}
    assert manifest.splits["val"].scenes[0].label_eroded is None
    assert not (tmp_path / "out" / "val" / "labels_eroded").exists()


def test_nothing_recognised_names_root_and_expected_names(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "photo.tif").write_bytes(b"")
    with pytest.raises(DatasetLayoutError) as info:
        prepare_dataset("vaihingen", tmp_path / "raw", tmp_path / "out")
    assert str(tmp_path / "raw") in str(info.value) and "top_mosaic_09cm_area1.tif" in str(info.value)


def test_uavid_splits_from_folders_and_test_without_labels(isprs_sample, tmp_path, isprs_files):
    image, ann = isprs_sample("potsdam")
    ids = isprs_files.full_ids(ann)[:200, :300].copy()
    ids[:, 280:] = 255  # padding, white in UAVid labels
    ids[190:, :] = 7  # clutter, black
    table = np.vstack([isprs_files.UAVID_RGB, [(64, 64, 0), (0, 0, 0)]])
    for split, seq in (("train", "seq1"), ("val", "seq16"), ("test", "seq21")):
        base = tmp_path / "raw" / "uavid_v1.5" / f"uavid_{split}" / seq
        isprs_files.write(base / "Images" / "000100.png", image[:, :200, :300], georef=False, driver="PNG")
        if split != "test":
            isprs_files.write(
                base / "Labels" / "000100.png",
                isprs_files.colours(ids, table, ignore=(255, 255, 255)),
                georef=False,
                driver="PNG",
            )
    manifest = prepare_dataset("uavid", tmp_path / "raw", tmp_path / "out", patch_size=128)
    assert {n: s.tiles for n, s in manifest.splits.items()} == {
        "train": ("seq1_000100",),
        "val": ("seq16_000100",),
        "test": ("seq21_000100",),
    }
    test = manifest.splits["test"]
    assert test.patches == () and test.scenes[0].label is None and test.class_pixels == (0,) * 8
    scene = manifest.splits["train"].scenes[0]
    labels, _, crs = read(manifest.resolve(scene.label))
    np.testing.assert_array_equal(labels[0], ids)
    assert crs is None and len(manifest.splits["val"].patches) == 6
    counts = sum(
        np.bincount(ids[r : r + 128, c : c + 128].ravel(), minlength=256) for r in (0, 72) for c in (0, 128, 172)
    )
    assert manifest.splits["train"].class_pixels == tuple(int(v) for v in counts[:8])  # overlaps count twice
    assert manifest.splits["train"].ignored_pixels == counts[255]


CLASSES_TOML = """
bands = ["R", "G", "B"]
gsd_m = 0.05
ignore = {ignore}
[[classes]]
name = "tree"
color = [0, 255, 0]
{tree_id}
[[classes]]
name = "building"
color = [0, 0, 255]
{building_id}
[[classes]]
name = "ground"
color = [255, 255, 255]
{ground_id}
[[classes]]
name = "grass"
color = [0, 255, 255]
{grass_id}
[[classes]]
name = "car"
color = [255, 255, 0]
in_mean = false
{car_id}
"""


def folder_dataset(isprs_sample, tmp_path, with_ids, isprs_files):
    image, ann = isprs_sample("potsdam")
    ids = {"tree": 40, "building": 20, "ground": 10, "grass": 30, "car": 50}
    text = CLASSES_TOML.format(
        ignore="0" if with_ids else "[0, 0, 0]", **{f"{k}_id": f"id = {v}" if with_ids else "" for k, v in ids.items()}
    )
    (tmp_path / "classes.toml").write_text(text)
    expected = {}
    for i, (name, suffix) in enumerate(zip("abcd", ("", "_label", "_mask", "-gt"), strict=True)):
        r, c = (i // 2) * 256, (i % 2) * 256
        a = ann[r : r + 256, c : c + 256]
        isprs_files.write(tmp_path / "images" / f"{name}.tif", image[:, r : r + 256, c : c + 256], r, c)
        label = (a * 10 if with_ids else isprs_files.colours(isprs_files.eroded_ids(a))).astype(np.uint8)
        png = suffix == "-gt"
        path = tmp_path / "labels" / f"{name}{suffix}.{'png' if png else 'tif'}"
        isprs_files.write(path, label, georef=not png, driver="PNG" if png else "GTiff")
        # toml order: tree, building, ground, grass, car  <- ann 4, 2, 1, 3, 5
        expected[name] = np.array([255, 2, 1, 3, 0, 4, 255], np.uint8)[a]
    (tmp_path / "labels" / "notes.txt").write_text("ignored: not a raster")
    return expected


@pytest.mark.parametrize("with_ids", [False, True])
def test_folder_remaps_classes_in_toml_order(isprs_sample, tmp_path, with_ids, isprs_files):
    expected = folder_dataset(isprs_sample, tmp_path, with_ids, isprs_files)
    manifest = prepare_folder(
        tmp_path / "images",
        tmp_path / "labels",
        tmp_path / "classes.toml",
        tmp_path / "out",
        val_fraction=0.25,
        test_fraction=0.25,
        patch_size=256,
        seed=3,
    )
    assert [c.name for c in manifest.classes] == ["tree", "building", "ground", "grass", "car"]
    assert manifest.classes[4].in_mean is False and manifest.gsd_m == 0.05 and manifest.dataset == "folder"
    tiles = [t for s in manifest.splits.values() for t in s.tiles]
    assert sorted(tiles) == ["a", "b", "c", "d"] and [len(s.tiles) for s in manifest.splits.values()] == [2, 1, 1]
    for split in manifest.splits.values():
        for tile, (_, label) in zip(split.tiles, manifest.patch_pairs(split.name), strict=True):
            np.testing.assert_array_equal(read(label)[0][0], expected[tile])


def test_folder_split_is_deterministic_per_seed(isprs_sample, tmp_path, isprs_files):
    folder_dataset(isprs_sample, tmp_path, False, isprs_files)
    args = (tmp_path / "images", tmp_path / "labels", tmp_path / "classes.toml")
    splits = [
        {
            n: s.tiles
            for n, s in prepare_folder(
                *args, tmp_path / f"out{i}", val_fraction=0.5, seed=seed, patch_size=256
            ).splits.items()
        }
        for i, seed in enumerate((7, 7, 8, 9, 10))
    ]
    assert splits[0] == splits[1] and set(splits[0]) == {"train", "val"}
    assert len({str(s) for s in splits}) > 1


def test_folder_image_without_label_is_an_error(isprs_sample, tmp_path, isprs_files):
    folder_dataset(isprs_sample, tmp_path, False, isprs_files)
    (tmp_path / "labels" / "c_mask.tif").unlink()
    with pytest.raises(DatasetLayoutError, match=r"c\.tif: image has no label"):
        prepare_folder(tmp_path / "images", tmp_path / "labels", tmp_path / "classes.toml", tmp_path / "out")
