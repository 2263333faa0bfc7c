"""Patch reading and the training view on patches written here, and the layering of data under training."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
import rasterio
import torch

from aerialseg.data.augment import Augmentation
from aerialseg.data.datasets import PatchDataset, TrainingView
from aerialseg.errors import DatasetLayoutError

NO_AUGMENTATION = Augmentation(
    crop=None, scales=(1.0,), rotate90=False, flips=False, brightness_contrast=0.0, mosaic=0.0, smart_crop_ratio=0.75
)


def write(path, array, driver="GTiff"):
    """A raster without georeferencing (as patches cut from UAVid's PNG frames are)."""
    count, height, width = array.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path, "w", driver=driver, width=width, height=height, count=count, dtype="uint8") as dst:
            dst.write(array)
    return path


@pytest.fixture
def pair(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (3, 16, 24), dtype=np.uint8)
    label = rng.choice(np.array([0, 1, 2, 255], np.uint8), size=(1, 16, 24))
    return write(tmp_path / "image.png", image, "PNG"), write(tmp_path / "label.png", label, "PNG"), image, label[0]


def test_patches_read_as_unit_floats_and_long_ids_without_warnings(pair):
    image_path, label_path, image, label = pair
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # plain pictures are expected here: no georeferencing warning
        x, y = PatchDataset([(image_path, label_path)])[0]
    assert x.dtype == torch.float32 and torch.equal(x, torch.from_numpy(image.astype(np.float32) / 255.0))
    assert y.dtype == torch.int64 and torch.equal(y, torch.from_numpy(label.astype(np.int64)))


@pytest.mark.parametrize("broken", ["image", "label"])
def test_an_unreadable_patch_is_a_layout_error_naming_the_file(pair, tmp_path, broken):
    image_path, label_path, _, _ = pair
    bad = tmp_path / f"{broken}.tif"
    bad.write_bytes(b"not a raster")
    pairs = [(bad, label_path)] if broken == "image" else [(image_path, bad)]
    with pytest.raises(DatasetLayoutError, match="cannot read a patch") as info:
        PatchDataset(pairs)[0]
    assert info.value.path == str(bad)


def test_image_and_label_of_different_sizes_are_a_layout_error(pair, tmp_path):
    image_path, _, _, _ = pair
    label_path = write(tmp_path / "small.tif", np.zeros((1, 8, 8), np.uint8))
    with pytest.raises(DatasetLayoutError, match="differ in size"):
        PatchDataset([(image_path, label_path)])[0]


def test_the_training_view_without_augmentation_is_the_patch(pair):
    image_path, label_path, _, _ = pair
    patches = PatchDataset([(image_path, label_path)])
    x, y = TrainingView(patches, NO_AUGMENTATION, 255, seed=1)[(3, 0)]
    assert torch.equal(x, patches[0][0]) and torch.equal(y, patches[0][1])


def test_the_training_view_draws_from_seed_epoch_and_index_alone(pair):
    image_path, label_path, _, _ = pair
    patches = PatchDataset([(image_path, label_path)] * 4)
    settings = Augmentation(
        crop=8,
        scales=(0.5, 1.0, 2.0),
        rotate90=True,
        flips=True,
        brightness_contrast=0.25,
        mosaic=0.5,
        smart_crop_ratio=0.75,
    )
    first, again = TrainingView(patches, settings, 255, seed=7), TrainingView(patches, settings, 255, seed=7)
    for key in [(0, 1), (2, 3), (5, 0)]:
        (x1, y1), (x2, y2) = first[key], again[key]
        assert x1.shape == (3, 8, 8) and torch.equal(x1, x2) and torch.equal(y1, y2)


def test_data_does_not_import_training():
    # training builds on data (recipes hand an Augmentation down); the other way round would be a cycle
    code = (
        "import sys, aerialseg.data.datasets, aerialseg.data.prepare; "
        "loaded = sorted(m for m in sys.modules if m.startswith('aerialseg.training')); "
        "assert not loaded, loaded"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
