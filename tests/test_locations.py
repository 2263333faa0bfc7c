"""Remote inputs: URLs and /vsi paths read window by window, named as written, refused or failed in one line.

The rasters are served by a local HTTP server with Range support (the ``range_server`` fixture), so
nothing here needs the internet; the byte counts are what the server sent.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.shutil

from aerialseg.batch import predict_batch
from aerialseg.errors import AerialsegError, InputRasterError
from aerialseg.inputs import expand_inputs
from aerialseg.locations import (
    VSI_CACHE_BYTES,
    RasterRef,
    as_input,
    looks_remote,
    public_url,
    remote_hint,
    remote_ref,
    remote_settings,
)
from aerialseg.options import InputOptions, PredictOptions, TilingOptions
from aerialseg.outputs import place_outputs
from aerialseg.pipeline import predict
from aerialseg.runners import RunnerSpec

FAST = PredictOptions(TilingOptions(tile_size=96, overlap=32))


@pytest.fixture(scope="module")
def cog(tmp_path_factory, neon_tif):
    """The NEON orthophoto as a cloud-optimised GeoTIFF: 128-pixel tiles, overviews."""
    path = tmp_path_factory.mktemp("cog") / "ortho.tif"
    rasterio.shutil.copy(neon_tif, path, driver="COG", BLOCKSIZE=128, COMPRESS="DEFLATE")
    return path


def classes(path):
    with rasterio.open(path) as src:
        return src.read(1), src.tags()


def only_line(err):
    lines = err.splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture
def runner_never_opened(monkeypatch):
    """RunnerSpec.open fails the test: what is refused must be refused before the network loads."""

    def fail(spec, choice=None):
        raise AssertionError("the network was opened")

    monkeypatch.setattr(RunnerSpec, "open", fail)


@pytest.fixture
def fast_runner(monkeypatch, context_runner):
    monkeypatch.setattr(RunnerSpec, "open", lambda spec, choice=None: context_runner())


@pytest.mark.parametrize(
    ("text", "gdal_path", "stem"),
    [
        (
            "https://example.com/a/ortho.tif?sig=abc&x=1",
            "/vsicurl/https://example.com/a/ortho.tif?sig=abc&x=1",
            "ortho",
        ),
        ("http://example.com/ortho.tiff", "/vsicurl/http://example.com/ortho.tiff", "ortho"),
        ("s3://bucket/flights/2024/ortho.tif", "/vsis3/bucket/flights/2024/ortho.tif", "ortho"),
        ("gs://bucket/ortho.tif", "/vsigs/bucket/ortho.tif", "ortho"),
        ("az://container/dir/ortho.tif", "/vsiaz/container/dir/ortho.tif", "ortho"),
        ("/vsizip/archive.zip/sheet_3.tif", "/vsizip/archive.zip/sheet_3.tif", "sheet_3"),
    ],
)
def test_urls_map_to_gdal_paths_and_keep_their_spelling(text, gdal_path, stem, tmp_path):
    ref = remote_ref(text)
    assert ref == RasterRef(text, gdal_path, stem) and str(ref) == text and ref.remote
    assert expand_inputs([text]) == [ref]  # never through Path, which would collapse '//'
    assert place_outputs([ref], out_dir=tmp_path) == [(ref, tmp_path / f"{stem}_classes.tif")]
    assert as_input(text) == ref and as_input(Path("local.tif")) == Path("local.tif")
    assert remote_ref("flights/ortho.tif") is None and remote_ref("C:/data/ortho.tif") is None


def test_settings_read_windows_only_and_leave_what_the_user_set(monkeypatch):
    ref = remote_ref("https://example.com/ortho.tif")
    settings = remote_settings(ref)
    assert settings["GDAL_DISABLE_READDIR_ON_OPEN"] == "EMPTY_DIR"
    assert settings["GDAL_HTTP_MULTIRANGE"] == "PARALLEL" and settings["GDAL_HTTP_MERGE_CONSECUTIVE_RANGES"] == "YES"
    assert settings["VSI_CACHE"] == "TRUE" and settings["VSI_CACHE_SIZE"] == str(VSI_CACHE_BYTES)
    assert ".tif" in settings["CPL_VSIL_CURL_ALLOWED_EXTENSIONS"]
    monkeypatch.setenv("VSI_CACHE_SIZE", "1000")
    with rasterio.Env(GDAL_HTTP_MULTIRANGE="SERIAL"):
        settings = remote_settings(ref)
    assert "VSI_CACHE_SIZE" not in settings and "GDAL_HTTP_MULTIRANGE" not in settings
    # A name without a raster suffix (a download link) must not be hidden by the extension filter.
    assert "CPL_VSIL_CURL_ALLOWED_EXTENSIONS" not in remote_settings(remote_ref("https://example.com/get?id=5"))


def test_recorded_urls_lose_credentials_and_signatures():
    assert (
        public_url("https://user:secret@example.com:8443/a/o.tif?X-Amz-Signature=k#f")
        == "https://example.com:8443/a/o.tif"
    )
    assert public_url("s3://bucket/o.tif") == "s3://bucket/o.tif"
    assert looks_remote("s3:/bucket/maps") and looks_remote("/vsis3/b/k") and not looks_remote("maps/s3:")


def test_a_remote_raster_predicts_what_the_local_file_does(range_server, cog, context_runner, tmp_path):
    url = range_server.add(cog)
    (result,) = predict_batch([url], context_runner(), FAST, out_dir=tmp_path / "remote")
    assert result.status == "ok" and result.input == remote_ref(url)
    assert result.output == tmp_path / "remote" / "ortho_classes.tif"
    (local,) = predict_batch([cog], context_runner(), FAST, out_dir=tmp_path / "local")
    remote_map, tags = classes(result.output)
    np.testing.assert_array_equal(remote_map, classes(local.output)[0])
    assert tags["AERIALSEG_SOURCE"] == url
    sent, size = range_server.bytes_sent(), cog.stat().st_size
    print(f"whole raster: {sent} bytes in {len(range_server.log)} requests for a file of {size} bytes")
    assert sent <= size  # every block once (the overviews not at all), however much the windows overlap


def test_a_band_of_rows_reads_a_fraction_of_the_file(range_server, cog, context_runner, tmp_path):
    url = range_server.add(cog)
    options = PredictOptions(FAST.tiling, InputOptions(rows=(0, 64)))
    result = predict(url, tmp_path / "band_classes.tif", context_runner(), options)
    whole = predict(cog, tmp_path / "whole_classes.tif", context_runner(), FAST)
    np.testing.assert_array_equal(classes(result.output)[0], classes(whole.output)[0][:64])
    sent, size = range_server.bytes_sent(), cog.stat().st_size
    print(f"rows 0-64 of 400: {sent} bytes in {len(range_server.log)} requests, {sent / size:.0%} of {size}")
    assert sent < 0.4 * size  # the first row of 128-pixel tiles (rows 0-96 are read) and the header


def test_a_remote_input_without_a_destination_is_refused_before_any_work(
    range_server, cog, context_runner, cli, runner_never_opened, abcnet_weights, tmp_path
):
    url = range_server.add(cog)
    with pytest.raises(AerialsegError, match="nothing can be written beside a remote input") as info:
        predict_batch([url], context_runner(), FAST)
    assert str(info.value).startswith(f"{url}: ") and "--out-dir" in str(info.value)
    code, _, err = cli(["predict", str(cog), url, "-m", str(abcnet_weights)])
    assert code == 1
    assert only_line(err) == (
        f"error: {url}: nothing can be written beside a remote input; pass --out-dir FOLDER "
        "(outputs are named <name>_classes.tif), or -o FILE for one input"
    )
    code, _, err = cli(["predict", url, "-m", str(abcnet_weights), "--out-dir", "s3://bucket/maps"])
    assert code == 1 and "--out-dir is not a local path" in only_line(err)
    assert not (tmp_path / "s3:").exists() and not Path("s3:").exists()
    code, _, err = cli(["predict", url, "-m", str(abcnet_weights), "--mosaic", "--out-dir", str(tmp_path)])
    assert code == 1 and "--mosaic takes local files only" in err
    assert not (cog.parent / "ortho_classes.tif").exists()


def _closed_port_url():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/gone.tif"


def test_unreachable_missing_and_non_raster_urls_fail_their_row_only(
    range_server, cog, context_runner, tmp_path, cli, fast_runner, abcnet_weights
):
    good = range_server.add(cog)
    missing = range_server.url + "missing.tif"
    (range_server.root / "notes.tif").write_text("field notes, not pixels")
    (range_server.root / "page.html").write_text("<html>an index page</html>")
    notes, page, unreachable = range_server.url + "notes.tif", range_server.url + "page.html", _closed_port_url()
    urls = [missing, notes, page, unreachable, good]
    results = predict_batch(urls, context_runner(), FAST, out_dir=tmp_path / "api")
    assert [r.status for r in results] == ["failed"] * 4 + ["ok"], [r.error for r in results]
    for url, result in zip(urls[:4], results, strict=False):
        assert result.error is not None and "\n" not in result.error
        assert result.error.startswith(f"{url}: cannot open as a raster (") and "/vsicurl/" not in result.error
    assert "404" in results[0].error and "curl -I URL" in results[0].error
    assert "not recognized" in results[1].error
    assert "connect" in results[3].error.lower()

    code, out, err = cli(["predict", missing, good, "-m", str(abcnet_weights), "--out-dir", str(tmp_path / "cli")])
    assert code == 1 and "Traceback" not in out + err
    (line,) = [line for line in err.splitlines() if line.startswith("error: ")]
    assert line.startswith(f"error: {missing}: cannot open as a raster (HTTP response code: 404)")
    assert (tmp_path / "cli" / "ortho_classes.tif").exists()


@pytest.fixture
def s3_at(monkeypatch, range_server, tmp_path):
    """GDAL's S3 client pointed at the local server, no credentials anywhere; returns the bucket name."""
    for key in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_NO_SIGN_REQUEST",
    ):
        monkeypatch.delenv(key, raising=False)
    host = range_server.url.split("/")[2]
    nowhere = str(tmp_path / "no-aws-files")
    for key, value in {
        "AWS_S3_ENDPOINT": host,
        "AWS_HTTPS": "NO",
        "AWS_VIRTUAL_HOSTING": "FALSE",
        "AWS_CONFIG_FILE": nowhere,
        "AWS_SHARED_CREDENTIALS_FILE": nowhere,
        "CPL_AWS_CREDENTIALS_FILE": nowhere,
        "CPL_AWS_AUTODETECT_EC2": "NO",
    }.items():
        monkeypatch.setenv(key, value)
    return range_server.url.split("/")[3]


def test_s3_urls_read_through_gdal_and_missing_credentials_name_the_fix(
    s3_at, range_server, cog, context_runner, tmp_path, monkeypatch
):
    range_server.add(cog)
    url = f"s3://{s3_at}/ortho.tif"
    (failed,) = predict_batch([url], context_runner(), FAST, out_dir=tmp_path / "a")
    assert failed.status == "failed" and failed.error.startswith(f"{url}: cannot open as a raster (")
    assert "AWS_NO_SIGN_REQUEST=YES" in failed.error and failed.error.endswith(remote_hint(remote_ref(url)))
    assert range_server.log == []  # refused by GDAL before any request

    monkeypatch.setenv("AWS_NO_SIGN_REQUEST", "YES")  # a public bucket
    range_server.add(cog, "public.tif")
    (result,) = predict_batch([f"s3://{s3_at}/public.tif"], context_runner(), FAST, out_dir=tmp_path / "b")
    (local,) = predict_batch([cog], context_runner(), FAST, out_dir=tmp_path / "c")
    assert result.status == "ok" and result.output.name == "public_classes.tif"
    np.testing.assert_array_equal(classes(result.output)[0], classes(local.output)[0])
    assert classes(result.output)[1]["AERIALSEG_SOURCE"] == f"s3://{s3_at}/public.tif"


def test_bad_vsi_paths_are_one_line_with_a_pointer_to_gdal(tmp_path, context_runner):
    with pytest.raises(InputRasterError) as info:
        predict(f"/vsizip/{tmp_path}/missing.zip/a.tif", tmp_path / "a_classes.tif", context_runner())
    text = str(info.value)
    assert text.startswith(f"/vsizip/{tmp_path}/missing.zip/a.tif: cannot open as a raster")
    assert "virtual_file_systems" in text and "\n" not in text


@pytest.fixture
def silent_server():
    """``http://127.0.0.1:PORT/``: the kernel accepts connections, nobody ever answers a request."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/"


def test_a_server_that_never_answers_fails_its_file_and_the_batch_goes_on(
    silent_server, cog, cli, context_runner, abcnet_weights, tmp_path, monkeypatch
):
    """Without GDAL's HTTP timeouts the read waited forever and the local file after it was never predicted."""
    import time

    monkeypatch.setattr("aerialseg.locations.STALL_TIMEOUT_S", 2)
    url = silent_server + "stalled.tif"
    item = tmp_path / "item.json"  # a STAC item whose image asset lives on that server
    item.write_text(
        json.dumps({"type": "Feature", "id": "scene", "assets": {"visual": {"href": silent_server + "a.tif"}}})
    )
    started = time.perf_counter()
    stalled, asset, local = predict_batch([url, item, cog], context_runner(), FAST, out_dir=tmp_path / "api")
    assert time.perf_counter() - started < 60
    assert stalled.status == "failed" and stalled.error.startswith(f"{url}: cannot open as a raster (")
    assert asset.status == "failed" and asset.error.startswith(f"{item} (asset visual): cannot open as a raster (")
    assert "\n" not in stalled.error + asset.error
    assert local.status == "ok", local.error
    code, out, _ = cli(["doctor", silent_server + "doctor.tif", "-m", str(abcnet_weights), "--json"])
    (finding,) = [f for f in json.loads(out)["findings"] if f["level"] == "error"]
    assert code == 1 and finding["message"].startswith("cannot open as a raster (CURL error"), finding


def test_the_users_own_http_timeouts_win(monkeypatch):
    ref = remote_ref("https://example.com/ortho.tif")
    assert remote_settings(ref)["GDAL_HTTP_LOW_SPEED_TIME"] == "60"
    assert remote_settings(ref)["GDAL_HTTP_CONNECTTIMEOUT"] == "30"
    monkeypatch.setenv("GDAL_HTTP_LOW_SPEED_TIME", "600")
    with rasterio.Env(GDAL_HTTP_CONNECTTIMEOUT="5"):
        settings = remote_settings(ref)
    assert "GDAL_HTTP_LOW_SPEED_TIME" not in settings and "GDAL_HTTP_CONNECTTIMEOUT" not in settings
