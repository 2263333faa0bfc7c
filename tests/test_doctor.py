from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import rasterio
from conftest import make_weights

from aerialseg.cli.main import main
from aerialseg.doctor import doctor


@pytest.fixture(scope="module")
def weights_20cm(tmp_path_factory):
    return make_weights(tmp_path_factory.mktemp("w") / "m20.safetensors", gsd_m=0.2)


def levels(report):
    return [(f.level, f.message) for f in report.findings]


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


def test_cli_exit_codes_json_and_no_torch(tmp_path, rasters, abcnet_weights, capsys):
    with pytest.raises(SystemExit) as info:
        main(["doctor", str(rasters["nodata"]), "-m", str(abcnet_weights), "--json"])
    assert info.value.code == 0 and json.loads(capsys.readouterr().out)["ok"] is True
    with pytest.raises(SystemExit) as info:
        main(["doctor", str(rasters["uint16_single"]), "-m", str(abcnet_weights)])
    assert info.value.code == 1 and "--bands" in capsys.readouterr().out
    code = (
        "import sys\n"
        "from aerialseg.cli.main import main\n"
        f"try:\n    main(['doctor', {str(rasters['nodata'])!r}, '-m', {str(abcnet_weights)!r}])\n"
        "except SystemExit as e:\n    assert e.code == 0\n"
        "assert 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
