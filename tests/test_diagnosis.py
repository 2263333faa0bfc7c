"""doctor: the facts and findings of a raster with a model, planned with predict's own options."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import rasterio
import rasterio.shutil

from aerialseg.diagnosis import doctor
from aerialseg.options import InputOptions, OutputOptions, PredictOptions, TilingOptions
from aerialseg.runners import RunnerSpec


@pytest.fixture(scope="module")
def weights_20cm(tmp_path_factory, make_weights):
    return make_weights(tmp_path_factory.mktemp("w") / "m20.safetensors", gsd_m=0.2)


def levels(report):
    return [(f.level, f.message) for f in report.findings]


def blending_mib(report):
    """The blender's share of the memory estimate, in MiB."""
    return int(re.search(r"blending (\d+) MiB", report.facts["memory"]).group(1))


def test_a_clean_ortho_reports_its_facts(rasters, abcnet_weights):
    report = doctor(rasters["nodata"], abcnet_weights)
    assert report.ok
    assert report.facts["CRS"] == "EPSG:32618 (projected)"
    assert report.facts["nodata"] == "nodata value 0"
    assert report.facts["valid pixels"].startswith("67.")  # the Landsat collar
    assert report.facts["bands used"] == "R->1, G->2, B->3"
    assert report.facts["scaling"] == "divide by 255"
    assert "grows with width only" in report.facts["memory"]
    assert report.facts["layout"].startswith("striped 791 x 3")


def test_tiles_are_planned_with_the_options_resolved_against_the_card(rasters, abcnet_weights):
    assert "of 128 x 128 (overlap 32)" in doctor(rasters["nodata"], abcnet_weights).facts["tiles"]  # the card's
    options = PredictOptions(tiling=TilingOptions(tile_size=256, overlap=64))
    assert "of 256 x 256 (overlap 64)" in doctor(rasters["nodata"], abcnet_weights, options).facts["tiles"]
    report = doctor(rasters["nodata"], abcnet_weights, PredictOptions(tiling=TilingOptions(overlap=128)))
    assert not report.ok and any("overlap 128 must be" in message for _, message in levels(report))


def test_memory_follows_the_blender_predict_uses(rasters, abcnet_weights, weights_20cm):
    lean = doctor(rasters["nodata"], abcnet_weights)
    dense = doctor(rasters["nodata"], abcnet_weights, PredictOptions(output=OutputOptions(probabilities=True)))
    assert "lean: class ids only" in lean.facts["memory"]
    assert "dense" in dense.facts["memory"]
    # (6 + 1) sums x 128 rows x 791 columns x 4 bytes: 2.7 MiB dense; the lean one holds the 32 overlap rows
    assert blending_mib(dense) == 3 and blending_mib(lean) < blending_mib(dense)
    resampled = doctor(rasters["striped"], weights_20cm)  # 10 cm input, 20 cm model: probabilities resampled
    assert "dense" in resampled.facts["memory"]


def test_the_engine_is_the_runner_specification_s(rasters, abcnet_weights):
    report = doctor(rasters["nodata"], RunnerSpec(str(abcnet_weights), "torch", precision="fp32"))
    assert report.facts["engine"].startswith("PyTorch fp32 on ")
    report = doctor(rasters["nodata"], RunnerSpec(str(abcnet_weights), precision="fp16", device="cpu"))
    assert not report.ok and any(level == "error" and "fp16" in message for level, message in levels(report))


def test_resolution_band_and_layout_problems_come_with_fixes(tmp_path, rasters, abcnet_weights, weights_20cm):
    report = doctor(rasters["striped"], weights_20cm)
    assert any(level == "info" and "model's 0.2 m" in message for level, message in levels(report))
    assert report.facts["GSD"].startswith("0.1 x 0.1 m on the ground; model 0.2 m")

    report = doctor(rasters["uint16_single"], abcnet_weights)
    assert not report.ok
    error = next(f for f in report.findings if f.level == "error")
    assert "the model reads 3 bands" in error.message and "--bands" in error.fix

    with rasterio.open(rasters["striped"]) as src:
        data = np.tile(src.read(), (1, 1, 6))
        profile = src.profile | dict(width=data.shape[2], tiled=False, blockysize=8)
    with rasterio.open(tmp_path / "wide.tif", "w", **profile) as dst:
        dst.write(data)
    report = doctor(tmp_path / "wide.tif", abcnet_weights)
    striped = next(f for f in report.findings if "striped" in f.message)
    assert striped.level == "warning" and "TILED=YES" in striped.fix


def test_missing_crs_and_unreadable_files_are_errors(tmp_path, vaihingen_png, abcnet_weights):
    report = doctor(vaihingen_png, abcnet_weights)
    assert not report.ok and any("no CRS" in m for _, m in levels(report))
    (tmp_path / "x.tif").write_text("nope")
    report = doctor(tmp_path / "x.tif", abcnet_weights)
    assert not report.ok and "cannot open as a raster" in report.findings[0].message


def test_cli_exit_codes_json_and_no_torch(rasters, abcnet_weights, cli):
    code, out, err = cli(["doctor", str(rasters["nodata"]), "-m", str(abcnet_weights), "--json"])
    assert code == 0 and json.loads(out)["ok"] is True and err == ""
    code, out, _ = cli(["doctor", str(rasters["nodata"]), "-m", str(abcnet_weights), "--uncertainty", "--json"])
    assert code == 0 and "dense" in json.loads(out)["facts"]["memory"]
    code, out, _ = cli(["doctor", str(rasters["uint16_single"]), "-m", str(abcnet_weights)])
    assert code == 1 and "--bands" in out
    code, _, err = cli(["doctor", str(rasters["nodata"]), "-m", str(abcnet_weights), "--gsd", "coarse"])
    assert code == 2 and len(err.splitlines()) == 1 and "'auto', 'native'" in err
    code = (
        "import sys\n"
        "from aerialseg.cli.main import main\n"
        f"try:\n    main(['doctor', {str(rasters['nodata'])!r}, '-m', {str(abcnet_weights)!r}])\n"
        "except SystemExit as e:\n    assert e.code == 0\n"
        "assert 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_nan_pixels_of_a_float_raster_count_as_nodata(rasters, abcnet_weights, tmp_path):
    with rasterio.open(rasters["uint16_single"]) as src:
        data = src.read().astype(np.float32)
        profile = dict(src.profile, dtype="float32", nodata=None)
    data[:, :450] = np.nan  # the top half
    with rasterio.open(tmp_path / "float.tif", "w", **profile) as dst:
        dst.write(data)
    report = doctor(tmp_path / "float.tif", abcnet_weights, PredictOptions())
    assert report.facts["nodata"] == "NaN and infinite values (no nodata value declared)"
    assert report.facts["valid pixels"] == "50.0%"


def test_remote_files_laid_out_for_slow_reads_get_the_cog_fix(range_server, rasters, abcnet_weights, tmp_path, cli):
    striped = range_server.add(rasters["striped"], "striped.tif")  # 400 x 6 strips
    report = doctor(striped, abcnet_weights)
    assert report.ok and report.facts["layout"].startswith("striped 400 x 6")
    (slow,) = [f for f in report.findings if "remotely" in f.message]
    assert slow.level == "warning" and "no internal tiles" in slow.message and "overviews" not in slow.message
    assert slow.fix == f"gdal_translate -of COG /vsicurl/{striped} striped_cog.tif, and read that copy"

    with rasterio.open(rasters["striped"]) as src:
        data = np.tile(src.read(), (1, 3, 3))
        profile = src.profile | dict(width=1200, height=1200, tiled=True, blockxsize=256, blockysize=256)
    with rasterio.open(tmp_path / "big.tif", "w", **profile) as dst:
        dst.write(data)
    big = range_server.add(tmp_path / "big.tif")
    (slow,) = [f for f in doctor(big, abcnet_weights).findings if "remotely" in f.message]
    assert "no overviews" in slow.message and "tiles" not in slow.message

    rasterio.shutil.copy(tmp_path / "big.tif", tmp_path / "cog.tif", driver="COG")
    cog = range_server.add(tmp_path / "cog.tif")
    assert not [f for f in doctor(cog, abcnet_weights).findings if "remotely" in f.message]
    assert not [f for f in doctor(rasters["striped"], abcnet_weights).findings if "remotely" in f.message]

    code, out, _ = cli(["doctor", striped, "-m", str(abcnet_weights), "--json"])
    assert code == 0 and json.loads(out)["path"] == striped
    assert any("gdal_translate -of COG" in f["fix"] for f in json.loads(out)["findings"])
    code, out, _ = cli(["doctor", range_server.url + "missing.tif", "-m", str(abcnet_weights), "--json"])
    (error,) = json.loads(out)["findings"]
    assert code == 1 and "404" in error["message"] and "curl -I URL" in error["fix"]


def test_a_stac_item_is_checked_through_its_asset(rasters, abcnet_weights, tmp_path):
    shutil.copyfile(rasters["striped"], tmp_path / "ortho.tif")
    item = {"type": "Feature", "id": "scene", "assets": {"visual": {"href": "ortho.tif", "type": "image/tiff"}}}
    (tmp_path / "item.json").write_text(json.dumps(item))
    report = doctor(str(tmp_path / "item.json"), abcnet_weights)
    assert report.ok and report.facts["bands used"] == "R->1, G->2, B->3"
    assert str(report.path) == f"{tmp_path / 'item.json'} (asset visual)"
    report = doctor(str(tmp_path / "item.json"), abcnet_weights, PredictOptions(input=InputOptions(asset="nir")))
    assert not report.ok and "has no asset 'nir'; its assets: visual (image/tiff)" in report.findings[-1].message
