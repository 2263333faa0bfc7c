"""STAC items as inputs: the chosen asset read, its href resolved against the item, the item id naming the outputs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import rasterio

from aerialseg.batch import predict_batch
from aerialseg.errors import AerialsegError, InputRasterError
from aerialseg.inputs import expand_inputs
from aerialseg.options import InputOptions, PredictOptions, TilingOptions
from aerialseg.pipeline import predict
from aerialseg.runners import RunnerSpec
from aerialseg.stac import choose_asset

TILING = TilingOptions(tile_size=96, overlap=32)
FAST = PredictOptions(TILING)


def item(item_id, assets, links=()):
    """A minimal STAC Item (GeoJSON Feature) with these assets."""
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": item_id,
        "geometry": None,
        "properties": {"datetime": "2019-05-01T00:00:00Z"},
        "links": list(links),
        "assets": assets,
    }


def cog_asset(href, roles=("data",)):
    return {"href": href, "type": "image/tiff; application=geotiff; profile=cloud-optimized", "roles": list(roles)}


def write(path, document):
    path.write_text(json.dumps(document))
    return path


def classes(path):
    with rasterio.open(path) as src:
        return src.read(1), src.tags()


@pytest.fixture
def scene(tmp_path, rasters):
    """A local item folder: item.json beside images/ortho.tif (relative href), a thumbnail and a striped copy."""
    (tmp_path / "images").mkdir()
    shutil.copyfile(rasters["striped"], tmp_path / "images" / "ortho.tif")
    shutil.copyfile(rasters["nodata"], tmp_path / "images" / "other.tif")
    assets = {
        "thumbnail": {"href": "thumb.png", "type": "image/png", "roles": ["thumbnail"]},
        "image": cog_asset("./images/ortho.tif"),
        "landsat": {"href": "images/other.tif", "type": "image/tiff", "roles": ["overview"]},
    }
    return write(tmp_path / "item.json", item("NEON_D03_OSBS_2019", assets))


def test_a_local_item_predicts_its_image_asset_into_a_map_named_by_its_id(scene, rasters, context_runner, tmp_path):
    (result,) = predict_batch([scene], context_runner(), FAST)
    assert result.status == "ok" and result.output == tmp_path / "NEON_D03_OSBS_2019_classes.tif"  # beside the item
    assert result.input.name == "NEON_D03_OSBS_2019.tif"
    (direct,) = predict_batch([rasters["striped"]], context_runner(), FAST, out_dir=tmp_path / "direct")
    array, tags = classes(result.output)
    np.testing.assert_array_equal(array, classes(direct.output)[0])
    assert tags["AERIALSEG_STAC_ITEM"] == "NEON_D03_OSBS_2019" and tags["AERIALSEG_STAC_ASSET"] == "image"
    assert tags["AERIALSEG_SOURCE"] == "ortho.tif"
    single = predict(str(scene), tmp_path / "single_classes.tif", context_runner(), FAST)  # one item, the API's way
    np.testing.assert_array_equal(classes(single.output)[0], array)


def test_asset_chooses_another_asset(scene, context_runner, tmp_path):
    options = PredictOptions(TILING, InputOptions(asset="landsat"))
    (result,) = predict_batch([scene], context_runner(), options, out_dir=tmp_path / "out")
    assert result.status == "ok"
    _, tags = classes(result.output)
    assert tags["AERIALSEG_STAC_ASSET"] == "landsat" and tags["AERIALSEG_SOURCE"] == "other.tif"
    with rasterio.open(result.output) as out, rasterio.open(tmp_path / "images" / "other.tif") as src:
        assert out.shape == src.shape


def test_asset_picks_one_of_two_image_assets_from_the_command_line_and_the_api(
    tmp_path, rasters, abcnet_weights, cli, context_runner
):
    """Two TIFF data assets: without --asset the item is refused, with it the chosen one is predicted.

    The command line once expanded the inputs twice, the second time from the asset it had
    already resolved, and refused every such item ("no input is a STAC item").
    """
    shutil.copyfile(rasters["striped"], tmp_path / "b02.tif")
    shutil.copyfile(rasters["nodata"], tmp_path / "b03.tif")
    path = write(tmp_path / "bands.json", item("two-bands", {"B02": cog_asset("b02.tif"), "B03": cog_asset("b03.tif")}))
    argv = ["predict", str(path), "-m", str(abcnet_weights), "--tile-size", "128", "--out-dir", str(tmp_path / "cli")]
    code, _, err = cli(argv)
    assert code == 1 and "has 2 TIFF data assets" in err and not (tmp_path / "cli").exists()
    code, _, err = cli([*argv, "--asset", "B03"])
    assert code == 0, err
    options = PredictOptions(TILING, InputOptions(asset="B03"))
    (result,) = predict_batch([path], context_runner(), options, out_dir=tmp_path / "api")
    (direct,) = predict_batch([tmp_path / "b03.tif"], context_runner(), FAST, out_dir=tmp_path / "direct")
    for output in (tmp_path / "cli" / "two-bands_classes.tif", result.output):
        array, tags = classes(output)
        assert tags["AERIALSEG_STAC_ASSET"] == "B03" and tags["AERIALSEG_SOURCE"] == "b03.tif"
        assert array.shape == classes(direct.output)[0].shape
    np.testing.assert_array_equal(classes(result.output)[0], classes(direct.output)[0])


def test_an_item_on_a_server_resolves_its_relative_href_against_its_url(
    range_server, rasters, context_runner, tmp_path
):
    range_server.add(rasters["striped"], "ortho.tif")
    url = range_server.url + "items/scene.json"
    (range_server.root / "items").mkdir()
    write(range_server.root / "items" / "scene.json", item("scene-1", {"visual": cog_asset("../ortho.tif")}))
    with pytest.raises(AerialsegError, match="nothing can be written beside a remote input"):
        predict_batch([url], context_runner(), FAST)
    (result,) = predict_batch([url], context_runner(), FAST, out_dir=tmp_path / "out")
    assert result.status == "ok" and result.output.name == "scene-1_classes.tif"
    (direct,) = predict_batch([rasters["striped"]], context_runner(), FAST, out_dir=tmp_path / "direct")
    array, tags = classes(result.output)
    np.testing.assert_array_equal(array, classes(direct.output)[0])
    assert tags["AERIALSEG_SOURCE"] == range_server.url + "ortho.tif" and tags["AERIALSEG_STAC_ITEM"] == "scene-1"


def test_a_local_item_may_name_a_remote_asset_and_a_collection_gives_every_item(
    range_server, rasters, context_runner, tmp_path
):
    href = range_server.add(rasters["striped"], "ortho.tif")
    one = item("remote-asset", {"visual": cog_asset(href + "?token=secret", roles=["visual"])})
    two = item("local-asset", {"image": cog_asset(str(rasters["striped"]))})
    collection = write(tmp_path / "items.json", {"type": "FeatureCollection", "features": [one, two]})
    results = predict_batch([collection], context_runner(), FAST, out_dir=tmp_path / "out")
    assert [(r.status, r.output.name) for r in results] == [
        ("ok", "remote-asset_classes.tif"),
        ("ok", "local-asset_classes.tif"),
    ]
    first, second = (classes(r.output) for r in results)
    np.testing.assert_array_equal(first[0], second[0])
    assert first[1]["AERIALSEG_SOURCE"] == href  # the signed URL's token is not recorded
    assert range_server.bytes_sent() > 0


@pytest.mark.parametrize(
    ("assets", "asset", "chosen"),
    [
        ({"thumbnail": {"type": "image/png"}, "visual": {"type": "image/jpeg"}}, None, "visual"),
        ({"rgb": {"type": "image/tiff", "roles": ["visual"]}, "b1": cog_asset("b1.tif")}, None, "rgb"),
        ({"meta": {"type": "application/xml", "roles": ["data"]}, "img": {"href": "x.TIF"}}, None, None),
        ({"meta": {"type": "application/xml", "roles": ["metadata"]}, "img": cog_asset("x.tif")}, None, "img"),
        ({"b1": cog_asset("b1.tif"), "b2": cog_asset("b2.tif")}, "b2", "b2"),
    ],
)
def test_the_default_asset_is_the_visual_image(assets, asset, chosen):
    if chosen is None:
        with pytest.raises(InputRasterError, match="no visual asset nor a TIFF data asset"):
            choose_asset(assets, asset, "item.json")
    else:
        assert choose_asset(assets, asset, "item.json") == chosen


def test_an_item_without_a_usable_asset_is_one_line_listing_its_assets(tmp_path, cli, abcnet_weights, monkeypatch):
    monkeypatch.setattr(RunnerSpec, "open", lambda *a, **k: pytest.fail("refused before the network loads"))
    bands = write(tmp_path / "bands.json", item("s2", {"B02": cog_asset("B02.tif"), "B03": cog_asset("B03.tif")}))
    code, _, err = cli(["predict", str(bands), "-m", str(abcnet_weights)])
    assert code == 1
    (line,) = err.splitlines()
    assert line == (
        f"error: {bands}: has 2 TIFF data assets, so which image to read is unclear; its assets: "
        "B02 (image/tiff; application=geotiff; profile=cloud-optimized, roles data); "
        "B03 (image/tiff; application=geotiff; profile=cloud-optimized, roles data); choose one with --asset KEY"
    )
    code, _, err = cli(["predict", str(bands), "-m", str(abcnet_weights), "--asset", "B08"])
    assert code == 1 and "has no asset 'B08'; its assets: B02 (" in err and len(err.splitlines()) == 1
    for name, document in {"feature.json": {"type": "Feature", "id": "x"}, "broken.json": "{"}.items():
        path = tmp_path / name
        path.write_text(document if isinstance(document, str) else json.dumps(document))
        code, _, err = cli(["predict", str(path), "-m", str(abcnet_weights)])
        assert code == 1 and len(err.splitlines()) == 1 and err.startswith(f"error: {path}: ")


def test_a_missing_local_asset_fails_its_row_naming_the_file(tmp_path, context_runner):
    path = write(tmp_path / "item.json", item("gone", {"visual": cog_asset("nowhere/ortho.tif")}))
    (result,) = predict_batch([path], context_runner(), FAST)
    assert result.status == "failed"
    assert result.error == f"{path} (asset visual): no such file {tmp_path / 'nowhere' / 'ortho.tif'}"
    assert expand_inputs([str(path)])[0].local == tmp_path / "nowhere" / "ortho.tif"


def test_an_asset_without_a_stac_item_is_refused_before_any_work(rasters, cli, abcnet_weights, tmp_path):
    argv = ["predict", str(rasters["striped"]), "-m", str(abcnet_weights), "--asset", "visual"]
    code, _, err = cli([*argv, "--out-dir", str(tmp_path / "out")])
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "--asset 'visual' names an asset of a STAC item, but no input is one; drop --asset" in err
    assert not (tmp_path / "out").exists()
    with pytest.raises(AerialsegError, match="no input is one"):
        expand_inputs([rasters["striped"]], asset="visual")


def test_a_named_pipe_named_like_an_item_is_refused_at_once(tmp_path, abcnet_weights):
    """Reading a named pipe waits for a writer: the item is refused before it is read (run apart, under a timeout)."""
    import os
    import subprocess
    import sys

    os.mkfifo(tmp_path / "item.json")
    probe = "import sys; from aerialseg.cli.main import main; main(sys.argv[1:])"
    argv = ["predict", str(tmp_path / "item.json"), "-m", str(abcnet_weights), "--out-dir", str(tmp_path / "out")]
    done = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'item.json'}: is a named pipe (FIFO), not a STAC item file; "
        "name a STAC Item (.json) as a local file or an http(s) URL"
    ]
