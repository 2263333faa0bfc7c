"""aerialseg inside QGIS: the plugin's install, zip and subprocess driver here; the algorithms in real QGIS.

The first half needs no QGIS: ``aerialseg qgis install/uninstall/package`` into a temporary
profiles folder, the plugin's modules importing nothing of aerialseg's stack, and the driver
(:mod:`aerialseg.qgis_plugin.process`) with a stand-in feedback. The second half runs
``qgis_process`` (Debian 12's QGIS 3.22: ``/usr/bin/qgis_process.bin``) and QGIS's Python
(tests/qgis_provider_check.py) against a plugin installed into a fresh HOME; it skips, saying
so, where QGIS is not installed (CI installs it).
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio

from aerialseg.errors import AerialsegError
from aerialseg.qgis_plugin import config as plugin_config
from aerialseg.qgis_plugin import process
from aerialseg.qgis_setup import PLUGIN_FOLDER, install_plugin, package_plugin, profiles_folder, uninstall_plugin

_PLUGIN_SOURCE = Path(__file__).resolve().parents[1] / "aerialseg" / "qgis_plugin"
_CHECK = Path(__file__).resolve().parent / "qgis_provider_check.py"
_QGIS_PROCESS = Path("/usr/bin/qgis_process.bin")  # Debian's /usr/bin/qgis_process wrapper passes a flag 3.22 rejects
_AERIALSEG = Path(sys.executable).parent / "aerialseg"


@pytest.fixture
def profiles(tmp_path, monkeypatch) -> Path:
    """An empty data folder: QGIS never ran here."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    return tmp_path / "share" / "QGIS" / "QGIS3" / "profiles"


def _settings(profiles: Path, profile: str = "default") -> Path:
    return profiles / profile / "QGIS" / "QGIS3.ini"


def test_install_puts_an_enabled_plugin_that_runs_this_aerialseg(profiles):
    installed = install_plugin()
    assert profiles_folder() == profiles and installed.folder == profiles / "default/python/plugins" / PLUGIN_FOLDER
    names = {p.name for p in installed.folder.iterdir()}
    assert names == {p.name for p in _PLUGIN_SOURCE.glob("*.py")} | {"icon.svg", "metadata.txt", "aerialseg.json"}
    metadata = (installed.folder / "metadata.txt").read_text()
    for line in ("hasProcessingProvider=yes", "qgisMinimumVersion=3.22", "name=aerialseg", "icon=icon.svg"):
        assert line in metadata.splitlines()
    config = plugin_config.PluginConfig.read(installed.folder)
    assert config.command == [str(_AERIALSEG)] and Path(config.command[0]).is_file()
    assert config.choices["precision"][0] == "auto" and "int8" in config.choices["precision"]
    assert _settings(profiles).read_text() == "[PythonPlugins]\naerialseg_processing=true\n"


def test_install_replaces_an_older_copy_and_keeps_every_other_setting(profiles):
    settings = _settings(profiles)
    settings.parent.mkdir(parents=True)
    before = (
        "[General]\nlocale\\userLocale=de_DE\n\n"
        "[PythonPlugins]\nprocessing=true\naerialseg_processing=false\n\n[qgis]\nx=@Variant(\\0\\0)\n"
    )
    settings.write_text(before)
    stale = profiles / "default/python/plugins" / PLUGIN_FOLDER / "removed_module.py"
    stale.parent.mkdir(parents=True)
    stale.write_text("raise SystemExit")
    install_plugin()
    install_plugin()  # twice: one line, one copy
    assert not stale.exists()
    assert settings.read_text() == before.replace("aerialseg_processing=false", "aerialseg_processing=true")
    assert not [p for p in stale.parent.parent.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_uninstall_removes_the_plugin_and_its_line_only(profiles, cli):
    install_plugin()
    settings = _settings(profiles)
    settings.write_text(settings.read_text() + "\n[qgis]\nkept=1\n")
    code, out, err = cli(["qgis", "uninstall"])
    assert code == 0 and "removed" in out
    assert not (profiles / "default/python/plugins" / PLUGIN_FOLDER).exists()
    assert settings.read_text() == "[PythonPlugins]\n\n[qgis]\nkept=1\n"
    assert uninstall_plugin() is None
    code, out, err = cli(["qgis", "uninstall"])
    assert code == 0 and "nothing to remove" in err


def test_a_profile_name_that_is_no_profile_is_refused_in_one_line(profiles, cli, one_line):
    for name in ("../etc", "a/b", "", " default"):
        with pytest.raises(AerialsegError, match="no QGIS profile name"):
            install_plugin(name)
    install_plugin()
    code, _, err = cli(["qgis", "install", "--profile", "work"])
    one_line(code, err, 1, "no QGIS profile 'work'", "name one of default")
    assert not (profiles / "work").exists()


def test_the_zip_holds_one_plugin_folder_without_an_executable(tmp_path, cli, one_line):
    path = package_plugin(tmp_path / "aerialseg-qgis.zip")
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        config = json.loads(archive.read(f"{PLUGIN_FOLDER}/aerialseg.json"))
    assert {name.split("/")[0] for name in names} == {PLUGIN_FOLDER}
    assert f"{PLUGIN_FOLDER}/metadata.txt" in names and f"{PLUGIN_FOLDER}/__init__.py" in names
    assert config["command"] is None and config["choices"]["backend"] == ["auto", "torch", "onnx"]
    code, _, err = cli(["qgis", "package", "-o", str(path)])
    one_line(code, err, 1, "aerialseg-qgis.zip", "--overwrite")
    code, _, err = cli(["qgis", "package", "-o", str(tmp_path / "plugin.tar")])
    one_line(code, err, 1, "plugin.tar", ".zip")


def test_the_plugin_imports_nothing_but_the_standard_library_and_qgis():
    allowed = {"qgis", "processing", "__future__", *sys.stdlib_module_names}
    for module in _PLUGIN_SOURCE.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            assert roots <= allowed, (module.name, roots)


class _Feedback:
    """QgsProcessingFeedback's part the driver uses; cancels at the first progress when asked."""

    def __init__(self, cancel_at_progress: bool = False):
        self.cancel_at_progress = cancel_at_progress
        self.canceled_at: float | None = None
        self.progress: list[float] = []
        self.infos: list[str] = []
        self.warnings: list[str] = []

    def isCanceled(self) -> bool:  # noqa: N802
        return self.canceled_at is not None

    def setProgress(self, value: float) -> None:  # noqa: N802
        self.progress.append(value)
        if self.cancel_at_progress and self.canceled_at is None:
            self.canceled_at = time.monotonic()

    def pushInfo(self, text: str) -> None:  # noqa: N802
        self.infos.append(text)

    def pushWarning(self, text: str) -> None:  # noqa: N802
        self.warnings.append(text)


def test_the_driver_turns_progress_lines_into_percent_and_returns_stdout(neon_map, tmp_path):
    feedback = _Feedback()
    command = [
        str(_AERIALSEG),
        "vectorize",
        str(neon_map.classes),
        "-o",
        str(tmp_path / "o.gpkg"),
        "--classes",
        "clutter",
    ]
    out = process.run([*command, "--strip-rows", "50", "--progress", "json"], feedback, process.share_of("rows"))
    assert feedback.progress == sorted(feedback.progress) and feedback.progress[-1] == 100.0
    assert len(feedback.progress) >= 2 and "clutter" in out  # the layers' table
    assert feedback.infos[0].startswith("aerialseg (pid ")


def test_the_driver_fails_with_aerialsegs_line(tmp_path):
    feedback = _Feedback()
    with pytest.raises(process.CommandFailed) as failed:
        process.run(
            [str(_AERIALSEG), "vectorize", str(tmp_path / "gone.tif"), "-o", str(tmp_path / "o.gpkg")],
            feedback,
            process.share_of("rows"),
        )
    assert str(failed.value).startswith(f"{tmp_path / 'gone.tif'}") and "Traceback" not in str(failed.value)


_SPAWNER = """
import json, signal, subprocess, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)  # deaf to Ctrl-C, and so is its child
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
sys.stderr.write(json.dumps({"stage": "tiles", "item": "x", "done": 1, "total": 10}) + "\\n")
sys.stderr.flush()
time.sleep(60)
"""


def test_cancel_ends_the_whole_process_group_even_when_ctrl_c_is_ignored(tmp_path):
    feedback = _Feedback(cancel_at_progress=True)
    started = time.monotonic()
    with pytest.raises(process.Canceled):
        process.run([sys.executable, "-c", _SPAWNER], feedback, process.share_of("tiles"))
    assert feedback.progress == [10.0] and feedback.canceled_at is not None
    assert time.monotonic() - feedback.canceled_at < process.STOP_GRACE_S + 2 and time.monotonic() - started < 20
    pid = int(feedback.infos[0].split("pid ")[1].split(")")[0])
    assert _living(pid) == []  # the child that slept 60 s is gone with its parent


def _living(group: int) -> list[int]:
    """The processes of a process group that are not zombies (a killed orphan waits for a reaper)."""
    living = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            living.append(int(stat.parent.name))
    return living


def test_the_child_gets_neither_qgiss_gdal_nor_its_python_settings(monkeypatch):
    for key in ("PROJ_LIB", "PROJ_DATA", "GDAL_DATA", "PYTHONPATH", "PYTHONHOME"):
        monkeypatch.setenv(key, "/usr/share/qgis-things")
    env = process.environment()
    assert not {"PROJ_LIB", "PROJ_DATA", "GDAL_DATA", "PYTHONPATH", "PYTHONHOME"} & set(env)
    assert env["PYTHONIOENCODING"] == "utf-8" and env["PATH"] == os.environ["PATH"]


def test_the_executable_is_the_setting_then_the_recorded_one_then_path(tmp_path, monkeypatch):
    recorded = plugin_config.PluginConfig("1", {}, [str(_AERIALSEG)])
    assert plugin_config.aerialseg_command(None, recorded) == [str(_AERIALSEG)]
    assert plugin_config.aerialseg_command(str(_AERIALSEG), plugin_config.PluginConfig("1")) == [str(_AERIALSEG)]
    with pytest.raises(plugin_config.SetupProblem, match="set in Processing"):
        plugin_config.aerialseg_command(str(tmp_path / "nothing"), recorded)
    with pytest.raises(plugin_config.SetupProblem, match="recorded at install .* is gone"):
        plugin_config.aerialseg_command(None, plugin_config.PluginConfig("1", {}, [str(tmp_path / "old/aerialseg")]))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(plugin_config.SetupProblem, match="aerialseg qgis install"):
        plugin_config.aerialseg_command(None, plugin_config.PluginConfig("1"))


# --- In real QGIS -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def qgis_home(tmp_path_factory, qgis_python) -> dict[str, str]:
    """A fresh HOME where ``aerialseg qgis install`` (the command line, as a user runs it) put the plugin."""
    if not _QGIS_PROCESS.is_file():
        pytest.skip(f"needs {_QGIS_PROCESS} (apt-get install qgis)")
    home = tmp_path_factory.mktemp("qgis_home")
    runtime = home / "run"
    runtime.mkdir(mode=0o700)
    venv = str(Path(sys.executable).parent)  # QGIS's embedded Python would take a venv's python3 for its own
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != venv)
    env = {
        **{key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"},
        "PATH": path,
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / ".local/share"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_RUNTIME_DIR": str(runtime),
        "QT_QPA_PLATFORM": "offscreen",
    }
    subprocess.run([str(_AERIALSEG), "qgis", "install"], env=env, check=True, capture_output=True, timeout=120)
    return env | {"PLUGINS": str(home / ".local/share/QGIS/QGIS3/profiles/default/python/plugins")}


def _qgis_process(env: dict[str, str], *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(_QGIS_PROCESS), *arguments], env=env, capture_output=True, text=True, timeout=600)


def _check(env: dict[str, str], python: str, *arguments: str) -> dict:
    done = subprocess.run(
        [python, str(_CHECK), env["PLUGINS"], *arguments], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_qgis_process_lists_the_three_algorithms(qgis_home):
    listed = _qgis_process(qgis_home, "list")
    assert listed.returncode == 0, listed.stderr
    found = [line.split("\t")[1] for line in listed.stdout.splitlines() if line.startswith("\taerialseg:")]
    assert found == ["aerialseg:doctor", "aerialseg:predict", "aerialseg:vectorize"]


def test_qgis_process_predict_writes_the_command_lines_map_pixel_for_pixel(qgis_home, neon_tif, tmp_path):
    through_qgis, plain = tmp_path / "qgis.tif", tmp_path / "cli.tif"
    parameters = [f"INPUT={neon_tif}", "MODEL=manet", "BACKEND=1", f"OUTPUT={through_qgis}"]  # 1: torch
    done = _qgis_process(qgis_home, "run", "aerialseg:predict", "--", *parameters)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "100 - done" in done.stdout and "Traceback" not in done.stdout + done.stderr
    subprocess.run(
        [str(_AERIALSEG), "-q", "predict", str(neon_tif), "--model", "manet", "--backend", "torch", "-o", str(plain)],
        env=qgis_home,
        check=True,
        capture_output=True,
        timeout=600,
    )
    with rasterio.open(through_qgis) as a, rasterio.open(plain) as b:
        assert a.profile == b.profile
        assert np.array_equal(a.read(), b.read())
    assert through_qgis.with_suffix(".qml").is_file()  # QGIS loads it styled


def test_qgis_process_vectorize_writes_the_objects(qgis_home, neon_map, tmp_path):
    from aerialseg.vector import VectorizeOptions, vectorize

    output = tmp_path / "objects.gpkg"
    done = _qgis_process(
        qgis_home,
        "run",
        "aerialseg:vectorize",
        "--",
        f"INPUT={neon_map.classes}",
        "CLASSES=clutter",
        f"OUTPUT={output}",
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    expected = vectorize(neon_map.classes, tmp_path / "expected.gpkg", VectorizeOptions(classes=("clutter",)))
    import pyogrio

    assert pyogrio.read_info(output, layer="clutter")["features"] == expected.counts["clutter"] > 0


def test_qgis_process_doctor_writes_the_report_and_logs_its_problems(qgis_home, neon_tif, rasters, tmp_path):
    page, text = tmp_path / "report.html", tmp_path / "report.txt"
    done = _qgis_process(qgis_home, "run", "aerialseg:doctor", "--", f"INPUT={neon_tif}", f"OUTPUT={page}")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") and "<th>CRS</th><td>EPSG:32617 (projected)</td>" in html
    coarse = tmp_path / "coarse.tif"  # 300 m pixels: the report says the model cannot map them
    shutil.copyfile(rasters["alpha"], coarse)
    done = _qgis_process(qgis_home, "run", "aerialseg:doctor", "--", f"INPUT={coarse}", f"OUTPUT={text}")
    assert done.returncode == 0 and "pixel size 300 m" in done.stdout + done.stderr
    lines = text.read_text().splitlines()
    assert lines[0] == f"aerialseg doctor: {coarse}" and any(
        line.startswith("error: pixel size 300 m") for line in lines
    )


def test_a_missing_input_fails_the_algorithm_with_aerialsegs_line(qgis_home, tmp_path):
    missing = tmp_path / "not_there.tif"
    done = _qgis_process(
        qgis_home, "run", "aerialseg:predict", "--", f"INPUT={missing}", f"OUTPUT={tmp_path / 'o.tif'}"
    )
    said = done.stdout + done.stderr
    assert done.returncode != 0 and f"{missing}: no such file" in said and "Traceback" not in said
    assert not (tmp_path / "o.tif").exists()


def test_cancel_ends_aerialseg_within_5_s_and_writes_nothing(qgis_home, qgis_python, neon_tif, tmp_path):
    big = tmp_path / "input" / "big.tif"  # 1600 x 1600: many tiles, so Cancel comes mid-run
    big.parent.mkdir()
    with rasterio.open(neon_tif) as src:
        profile, pixels = src.profile, np.tile(src.read(), (1, 4, 4))
    profile.update(width=pixels.shape[2], height=pixels.shape[1])
    with rasterio.open(big, "w", **profile) as dst:
        dst.write(pixels)
    out = tmp_path / "out"
    out.mkdir()
    answer = _check(qgis_home, qgis_python, "cancel", str(big), str(out / "map.tif"))
    assert answer["error"] == "canceled; nothing was written" and len(answer["progress"]) == 1
    assert answer["seconds_after_cancel"] < 5 and _living(answer["pid"]) == []
    assert answer["files"] == []


def test_a_geopackage_loads_as_one_styled_layer_per_class(qgis_home, qgis_python, neon_map, tmp_path):
    objects = tmp_path / "objects.gpkg"
    answer = _check(qgis_home, qgis_python, "load", str(neon_map.classes), str(objects), "building,car,clutter")
    assert answer["error"] is None and answer["progress"][-1] == 100.0
    colors = {c.name: list(c.color) for c in neon_map.card.classes}
    loaded = answer["loaded"]
    assert sorted(loaded) == [f"{objects}|layername={name}" for name in ("building", "car", "clutter")]
    for uri, layer in loaded.items():
        name = uri.split("=")[1]
        assert layer["name"] == name and layer["valid"] and layer["renderer"] == "singleSymbol"
        assert layer["fill"] == [*colors[name], 102]  # the style stored in the GeoPackage
    assert loaded[f"{objects}|layername=clutter"]["features"] > 0


def test_the_zip_package_runs_with_aerialseg_on_path(qgis_home, neon_map, tmp_path):
    home = tmp_path / "home"
    plugins = home / "share/QGIS/QGIS3/profiles/default/python/plugins"
    plugins.mkdir(parents=True)
    with zipfile.ZipFile(package_plugin(tmp_path / "plugin.zip")) as archive:
        archive.extractall(plugins)
    on_path = tmp_path / "bin"
    on_path.mkdir()
    (on_path / "aerialseg").symlink_to(_AERIALSEG)
    env = qgis_home | {"XDG_DATA_HOME": str(home / "share"), "PATH": f"{on_path}{os.pathsep}{qgis_home['PATH']}"}
    assert _qgis_process(env, "plugins", "enable", PLUGIN_FOLDER).returncode == 0
    output = tmp_path / "objects.fgb"
    done = _qgis_process(env, "run", "aerialseg:vectorize", "--", f"INPUT={neon_map.classes}", f"OUTPUT={output}")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert output.is_file() and output.with_suffix(".qml").is_file()


def test_the_predict_dialog_opens_with_its_parameters(qgis_home, qgis_python, neon_tif, tmp_path):
    png = tmp_path / "dialog.png"
    answer = _check(qgis_home, qgis_python, "dialog", str(neon_tif), str(png))
    assert answer == {"saved": True, "title": "Predict land cover"}
    with rasterio.open(png) as picture:
        assert picture.width >= 700 and len(np.unique(picture.read(1))) > 8  # drawn, not blank
