"""predict on a local Dask cluster of 2 worker processes: the same files as the in-process path."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from contextlib import contextmanager

import numpy as np
import pytest
import rasterio

from aerialseg.batch import predict_batch
from aerialseg.cluster import RunnerSpec, close_client, open_client
from aerialseg.errors import AerialsegError
from aerialseg.options import OutputOptions, TilingOptions
from aerialseg.pipeline import PredictOptions
from aerialseg.runners import open_runner

pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    client = open_client("local:2")
    yield client
    close_client(client)


@pytest.fixture(scope="module")
def batch(rasters):
    return [rasters["nodata"], rasters["jpeg_3857"], rasters["striped"]]


@contextmanager
def worker_threads():
    """Run torch with the threads each worker of ``local:2`` gets (cores / 2)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, os.cpu_count() // 2))
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def local_maps(batch, abcnet_weights, tmp_path_factory):
    """The in-process run, with the torch threads each worker of ``local:2`` gets (cores / 2).

    Another thread count changes the order of float sums inside the convolutions: the class
    maps stay identical, but a few probability values (about 5 in a million) land one
    quantisation step (1/254) away.
    """
    out = tmp_path_factory.mktemp("local")
    options = PredictOptions(TilingOptions(tile_size=256, overlap=64), output=OutputOptions(probabilities=True))
    with worker_threads():
        results = predict_batch(
            batch, open_runner(abcnet_weights, backend="torch", precision="fp32"), options, out_dir=out
        )
    assert [r.status for r in results] == ["ok"] * 3
    return out, options


def same_file(a, b):
    """Byte-identical apart from the creation time tag (two local runs differ in it too)."""
    with rasterio.open(a) as x, rasterio.open(b) as y:
        created_a, created_b = x.tags()["AERIALSEG_CREATED"], y.tags()["AERIALSEG_CREATED"]
        assert (x.read() == y.read()).all()
    data_a, data_b = a.read_bytes(), b.read_bytes().replace(created_b.encode(), created_a.encode())
    return data_a == data_b


@pytest.mark.parametrize("split_rows", [100_000, 150], ids=["whole-files", "bands-of-rows"])
def test_a_batch_on_the_cluster_equals_the_local_run(client, batch, local_maps, abcnet_weights, tmp_path, split_rows):
    local, options = local_maps
    results = predict_batch(
        batch,
        RunnerSpec(str(abcnet_weights), backend="torch", precision="fp32"),
        options,
        cluster=client,
        out_dir=tmp_path,
        split_rows=split_rows,
    )
    assert [r.status for r in results] == ["ok"] * 3
    for result in results:
        name = result.output.name
        assert same_file(local / name, tmp_path / name)
        probabilities = name.replace(".tif", "_probabilities.tif")
        assert same_file(local / probabilities, tmp_path / probabilities)
        for style in (name.replace(".tif", ".qml"), f"{name}.aux.xml"):  # the assembled map's style files
            assert (local / style).read_bytes() == (tmp_path / style).read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no band folders left


def test_a_worker_killed_mid_task_still_gives_the_complete_map(client, rasters, local_maps, abcnet_weights, tmp_path):
    local, options = local_maps
    spec = RunnerSpec(str(abcnet_weights), backend="torch", precision="fp32")
    outcome = {}
    job = threading.Thread(
        target=lambda: outcome.update(
            results=predict_batch([rasters["nodata"]], spec, options, cluster=client, out_dir=tmp_path, split_rows=60)
        ),
    )
    job.start()
    killed = None
    deadline = time.monotonic() + 60
    while killed is None and time.monotonic() < deadline:
        busy = [worker for worker, tasks in client.processing().items() if tasks]
        if busy:
            pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
            os.kill(pid, signal.SIGKILL)
            killed = pid
        time.sleep(0.05)
    job.join(timeout=300)
    assert killed is not None and not job.is_alive()
    (result,) = outcome["results"]
    assert result.status == "ok"
    assert same_file(local / result.output.name, tmp_path / result.output.name)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "RGB.byte_classes.qml",
        "RGB.byte_classes.tif",
        "RGB.byte_classes.tif.aux.xml",
        "RGB.byte_classes_probabilities.tif",
    ]


def test_resume_skips_finished_files_and_a_bad_file_fails_alone(client, rasters, abcnet_weights, tmp_path):
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"not a raster")
    spec = RunnerSpec(str(abcnet_weights), backend="torch", precision="fp32")
    options = PredictOptions(TilingOptions(tile_size=256, overlap=64))
    first = predict_batch([rasters["striped"], bad], spec, options, cluster=client, out_dir=tmp_path / "out")
    assert [r.status for r in first] == ["ok", "failed"] and "bad.tif" in first[1].error
    stamp = (tmp_path / "out" / "neon_osbs_029_classes.tif").stat().st_mtime_ns
    again = predict_batch(
        [rasters["striped"]],
        spec,
        PredictOptions(TilingOptions(tile_size=256, overlap=64), output=OutputOptions(resume=True, skip_finished=True)),
        cluster=client,
        out_dir=tmp_path / "out",
    )
    assert again[0].status == "skipped"
    assert (tmp_path / "out" / "neon_osbs_029_classes.tif").stat().st_mtime_ns == stamp
    with rasterio.open(tmp_path / "out" / "neon_osbs_029_classes.tif") as src:
        assert np.isin(src.read(1), list(range(6)) + [255]).all()


def test_the_command_line_runs_on_a_local_cluster(rasters, abcnet_weights, tmp_path, cli):
    import json

    out = tmp_path / "map_classes.tif"
    code, stdout, err = cli(
        [
            "predict",
            str(rasters["striped"]),
            "--model",
            str(abcnet_weights),
            "-o",
            str(out),
            "--tile-size",
            "256",
            "--overlap",
            "64",
            "--cluster",
            "local:2",
            "--split-rows",
            "150",
            "--json",
        ]
    )
    assert code == 0, err
    (result,) = json.loads(stdout)
    assert result["status"] == "ok" and result["tiles_run"] > 0 and out.exists()
    code, _, err = cli(["predict", str(rasters["striped"]), "--model", "x", "--cluster", "local:two"])
    assert code == 2 and "local:N" in err


def test_vectorize_of_a_split_raster_equals_vectorizing_the_whole_map(client, rasters, tmp_path):
    import pyogrio

    from aerialseg.vector import VectorizeOptions, vectorize

    # the trained sample weights make real regions (random ones only specks); read at their 5 cm GSD
    objects = VectorizeOptions(classes=("low_vegetation", "tree"))
    options = PredictOptions(output=OutputOptions(vectorize=objects))
    (result,) = predict_batch(
        [rasters["striped"]],
        RunnerSpec("manet-r18-potsdam-sample", backend="torch", precision="fp32"),
        options,
        cluster=client,
        out_dir=tmp_path,
        split_rows=150,
    )
    assert result.status == "ok"
    # the bands, predicted on the model's grid and resampled, equal the whole run
    with worker_threads():
        predict_batch(
            [rasters["striped"]],
            open_runner("manet-r18-potsdam-sample", backend="torch", precision="fp32"),
            PredictOptions(),
            out_dir=tmp_path / "local",
        )
    assert same_file(tmp_path / "local" / result.output.name, result.output)
    vectorize(result.output, tmp_path / "direct.gpkg", objects)
    for layer in ("low_vegetation", "tree"):
        got = pyogrio.read_dataframe(tmp_path / "neon_osbs_029_objects.gpkg", layer=layer)
        want = pyogrio.read_dataframe(tmp_path / "direct.gpkg", layer=layer)
        assert len(got) > 0 and sorted(got.geometry.to_wkb()) == sorted(want.geometry.to_wkb())


def test_no_input_is_written_over_or_emptied_and_one_file_never_stops_the_batch(
    client, rasters, abcnet_weights, tmp_path
):
    spec = RunnerSpec(str(abcnet_weights), backend="torch", precision="fp32")
    options = PredictOptions(TilingOptions(tile_size=256, overlap=64), output=OutputOptions(overwrite=True))
    out = tmp_path / "out"
    ortho = tmp_path / "ortho.tif"
    shutil.copyfile(rasters["nodata"], ortho)
    stashed = out / ".stashed_classes.tif.bands" / "stashed.tif"  # an input where its bands would go
    stashed.parent.mkdir(parents=True)
    shutil.copyfile(rasters["striped"], stashed)
    blocked = tmp_path / "blocked.tif"
    shutil.copyfile(rasters["striped"], blocked)
    (out / ".blocked_classes.tif.bands").write_text("a file where the bands would go")
    before = {path: path.read_bytes() for path in (ortho, stashed)}

    (result,) = predict_batch([ortho], spec, options, cluster=client, output=ortho)
    assert result.status == "failed" and f"this output is the input {ortho}" in result.error
    (result,) = predict_batch(
        [stashed], spec, options, cluster=client, output=out / "stashed_classes.tif", split_rows=150
    )
    assert result.status == "failed" and f"holds the input {stashed}" in result.error
    assert {path: path.read_bytes() for path in before} == before

    results = predict_batch([blocked, rasters["striped"]], spec, options, cluster=client, out_dir=out, split_rows=150)
    assert [r.status for r in results] == ["failed", "ok"]
    assert "cannot create the folder for the bands" in results[0].error
    assert (out / "neon_osbs_029_classes.tif").exists() and not (out / "blocked_classes.tif").exists()


def test_settings_are_checked_before_any_task(client, rasters, abcnet_weights, tmp_path):
    from aerialseg.vector import VectorizeOptions

    spec = RunnerSpec(str(abcnet_weights), backend="torch", precision="fp32")
    typo = PredictOptions(output=OutputOptions(vectorize=VectorizeOptions(classes=("bilding",))))
    with pytest.raises(AerialsegError, match="no class 'bilding'"):
        predict_batch([rasters["striped"]], spec, typo, cluster=client, out_dir=tmp_path)
    with pytest.raises(AerialsegError, match="split_rows 0"):
        predict_batch([rasters["striped"]], spec, PredictOptions(), cluster=client, out_dir=tmp_path, split_rows=0)
    assert list(tmp_path.iterdir()) == []


def test_resume_on_the_cluster_from_the_command_line_skips_finished_files(rasters, abcnet_weights, tmp_path, cli):
    import json

    finished = tmp_path / "neon_osbs_029_classes.tif"
    finished.write_bytes(b"a finished map")
    argv = ["predict", str(rasters["striped"]), "-m", str(abcnet_weights), "--out-dir", str(tmp_path)]
    code, stdout, err = cli([*argv, "--cluster", "local:1", "--resume", "--json"])
    assert code == 0, err
    assert [(r["input"], r["status"]) for r in json.loads(stdout)] == [(str(rasters["striped"]), "skipped")]
    assert finished.read_bytes() == b"a finished map"


def test_a_mosaic_on_the_cluster_equals_the_local_mosaic(client, rasters, abcnet_weights, tmp_path):
    """Sheets of a real tile as one mosaic, split in bands of rows across the workers: the local map."""
    from rasterio.windows import Window

    from aerialseg.options import InputOptions

    sheets = tmp_path / "sheets"
    sheets.mkdir()
    with rasterio.open(rasters["striped"]) as src:
        for name, (col, row, width, height) in {"w": (0, 0, 190, 400), "e": (190, 0, 210, 400)}.items():
            window = Window(col, row, width, height)
            profile = src.profile | {"width": width, "height": height, "transform": src.window_transform(window)}
            with rasterio.open(sheets / f"{name}.tif", "w", **profile) as dst:
                dst.write(src.read(window=window))
    options = PredictOptions(TilingOptions(tile_size=256, overlap=64), InputOptions(mosaic=True))
    with worker_threads():
        local = predict_batch(
            [sheets], open_runner(str(abcnet_weights), backend="torch"), options, out_dir=tmp_path / "l"
        )
    spec = RunnerSpec(str(abcnet_weights), backend="torch")
    remote = predict_batch([sheets], spec, options, cluster=client, out_dir=tmp_path / "c", split_rows=150)
    assert [r.status for r in local] == [r.status for r in remote] == ["ok", "ok"]
    for name in ("w", "e"):
        with (
            rasterio.open(tmp_path / "l" / f"{name}_classes.tif") as a,
            rasterio.open(tmp_path / "c" / f"{name}_classes.tif") as b,
        ):
            assert a.transform == b.transform and np.array_equal(a.read(), b.read())
