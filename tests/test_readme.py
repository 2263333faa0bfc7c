"""Every command the README shows runs, as written, where the files it names exist.

The README's ``bash`` blocks, the ``$`` lines of its ``console`` blocks and its ``python``
block are read from the file at collection time; each block runs in a fresh copy of a small
world that holds what the commands name: ``ortho.tif`` and the ``flights/`` batch (crops of the
carried NEON orthophoto), ``item.json`` (a STAC item of ``ortho.tif``), ``~/raw/Potsdam`` and
``~/raw/Vaihingen`` (miniature official archives of the shared ISPRS patches), prepared datasets,
a GeoSeg checkpoint, ImageNet trunk weights. ``HOME`` is the world's, so
``~/.local/share/aerialseg`` (weights, data folder) is the default location and starts with
nothing but the package's sample weights.

What the test changes is listed here and nowhere else: training commands get a few steps
(:data:`TRAIN_LIMITS`, also in the Python block), the Dask scheduler of the examples runs on
this machine at a free port, ``/shared/`` is a folder of the world. Commands that install
software or are the checks ``.ci/run`` performs on a fresh clone, and those this machine cannot
run, are listed in :data:`NOT_RUN` with the reason; any other command is run, so an example
added to the README is tested or this test fails.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import runpy
import shlex
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

README = Path(__file__).resolve().parent.parent / "README.md"
REPO = README.parent
TRAIN_LIMITS = ["--max-steps", "1", "--batch-size", "2", "--crop", "64", "--epochs", "1"]
PYTHON_TRAIN_LIMITS = "max_steps=1, batch_size=2, crop=64, epochs=1"
NOT_RUN = {
    "python3 -m venv": "creates the environment: .ci/run installs from a fresh clone the same way",
    ". .venv/bin/activate": "part of the installation above",
    "pip install": "installs: .ci/run does, on a fresh clone",
    "python -m pytest": "the suite itself: .ci/run runs it",
    "ruff ": "run by .ci/run",
    "mypy ": "run by .ci/run",
    "pre-commit install": "installs git hooks into the developer's clone",
    "bash benchmarks/gpu.sh": "needs a CUDA GPU",
    "python examples/train_sample_weights.py": "trains for about 28 minutes; its product is the shipped sample weights",
    "aerialseg predict https://": "reads over the internet: tests/test_locations.py and test_stac.py do the same "
    "against a local server",
    "aerialseg doctor https://": "reads over the internet: tests/test_diagnosis.py does the same locally",
    "AWS_NO_SIGN_REQUEST=YES aerialseg": "reads a bucket: tests/test_locations.py reads s3:// from a local server",
    "qgis_process run": "needs QGIS: tests/test_qgis_provider.py runs the same algorithms through "
    "/usr/bin/qgis_process.bin in a fresh HOME",
    "aerialseg weights pull https://": "downloads over the internet: tests/test_pull.py pulls from a local server; "
    "the README's world installs a Deepness-contract stand-in for the model it names",
}
ISPRS_WORDS = ("~/raw/", "--dataset potsdam", "--dataset vaihingen", "data/potsdam", "raw/Potsdam")


@dataclass(frozen=True)
class Block:
    """One fenced block: its language, first line number and commands (continuations joined)."""

    language: str
    line: int
    commands: tuple[str, ...]
    text: str


def _blocks() -> list[Block]:
    blocks, language, start, lines = [], None, 0, []
    for number, line in enumerate(README.read_text().splitlines(), start=1):
        if line.startswith("```"):
            if language is None:
                language, start, lines = line[3:].strip(), number, []
            else:
                if language in ("bash", "console", "python"):
                    text = "\n".join(lines)
                    blocks.append(Block(language, start, _commands(language, lines), text))
                language = None
        elif language is not None:
            lines.append(line)
    return blocks


def _commands(language: str, lines: list[str]) -> tuple[str, ...]:
    if language == "python":
        return ("\n".join(lines),)
    if language == "console":
        lines = [line[2:] for line in lines if line.startswith("$ ")]
    joined = re.sub(r"\\\n\s*", "", "\n".join(lines))
    commands = []
    for line in joined.splitlines():
        command = re.sub(r"\s+#\s.*$", "", line).strip()
        commands += [part.strip() for part in command.split(" && ") if part.strip()]
    return tuple(commands)


BLOCKS = _blocks()


def _reason_not_run(command: str) -> str | None:
    return next((why for prefix, why in NOT_RUN.items() if command.startswith(prefix)), None)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def template(request, tmp_path_factory, neon_tif, isprs_files) -> Path:
    """The files the README's commands name, built once; each block runs in a copy."""
    world = tmp_path_factory.mktemp("readme-world")
    with rasterio.open(neon_tif) as src:
        for name, (row, col, size) in {
            "ortho.tif": (0, 0, 256),
            "flights/a.tif": (0, 256, 144),
            "flights/b.tif": (256, 0, 144),
            "more/c.tif": (256, 256, 144),
            "shared/mosaic.tif": (100, 100, 200),
            "sheets/nw.tif": (0, 0, 128),
            "sheets/ne.tif": (0, 128, 128),
            "sheets/sw.tif": (128, 0, 128),
            "sheets/se.tif": (128, 128, 128),
        }.items():
            window = Window(col, row, size, size)
            profile = src.profile | {"width": size, "height": size, "transform": src.window_transform(window)}
            (world / name).parent.mkdir(parents=True, exist_ok=True)
            with rasterio.open(world / name, "w", **profile) as dst:
                dst.write(src.read(window=window))
        _own_dataset(src, world)
    visual = {"href": "ortho.tif", "type": "image/tiff; application=geotiff", "roles": ["visual"]}
    stac_item = {"type": "Feature", "stac_version": "1.0.0", "id": "ortho-2019", "assets": {"visual": visual}}
    (world / "item.json").write_text(json.dumps(stac_item))  # a STAC item of ortho.tif
    (world / "aerialseg" / "resources").mkdir(parents=True)  # the quick start runs in the clone
    shutil.copyfile(neon_tif, world / "aerialseg" / "resources" / neon_tif.name)
    for folder in ("benchmarks", "examples", "weights"):
        (world / folder).symlink_to(REPO / folder)
    import torch
    from safetensors.torch import save_file

    from aerialseg.models import create_model
    from aerialseg.models.backbones import build_resnet

    torch.manual_seed(0)
    save_file(build_resnet("resnet18").state_dict(), str(world / "resnet18-imagenet.safetensors"))
    net = create_model("manet", "resnet50").state_dict()  # GeoSeg's Lightning layout: net. prefix, state_dict
    checkpoint = world / "model_weights" / "vaihingen" / "manet" / "manet.ckpt"
    checkpoint.parent.mkdir(parents=True)
    torch.save({"state_dict": {f"net.{name}": value for name, value in net.items()}}, checkpoint)
    shutil.copyfile(checkpoint, world / "manet.ckpt")
    try:
        isprs_sample = request.getfixturevalue("isprs_sample")
    except pytest.skip.Exception:  # no ../shared: the blocks that need the ISPRS archives skip
        return world
    from aerialseg.data.prepare import prepare_dataset

    for dataset, folder in (("potsdam", "Potsdam"), ("vaihingen", "Vaihingen")):
        isprs_files.archive(isprs_sample, world / "home" / "raw" / folder, dataset)
        shutil.copytree(world / "home" / "raw" / folder, world / "raw" / folder)
        prepare_dataset(dataset, world / "raw" / folder, world / "prepared" / dataset, patch_size=128)
    (world / "isprs").touch()
    return world


def _own_dataset(src, world: Path) -> None:
    """``tiles/``, ``masks/`` and ``classes.toml`` for ``prepare folder``: NEON crops labelled bright/dark."""
    for index, (row, col) in enumerate([(0, 0), (0, 128), (128, 0), (128, 128)]):
        window = Window(col, row, 128, 128)
        pixels = src.read(window=window)
        grid = {"crs": src.crs, "transform": src.window_transform(window), "width": 128, "height": 128}
        for folder, data in (("tiles", pixels), ("masks", (pixels.mean(axis=0) > 120).astype(np.uint8)[None])):
            (world / folder).mkdir(exist_ok=True)
            with rasterio.open(
                world / folder / f"t{index}.tif", "w", driver="GTiff", count=len(data), dtype="uint8", **grid
            ) as dst:
                dst.write(data.astype(np.uint8))
    (world / "classes.toml").write_text(
        '[[classes]]\nname = "dark"\ncolor = [0, 90, 0]\nid = 0\n'
        '[[classes]]\nname = "bright"\ncolor = [220, 220, 220]\nid = 1\n'
    )


class World:
    """A copy of the template for one block, with the block's prerequisites and its environment."""

    def __init__(self, template: Path, folder: Path, block: Block):
        shutil.copytree(template, folder, symlinks=True)
        self.folder, self.block = folder, block
        self.home = folder / "home"
        self.env = {key: value for key, value in os.environ.items() if not key.startswith(("AERIALSEG_", "XDG_"))}
        self.env |= {"HOME": str(self.home), "XDG_CACHE_HOME": str(template.parent / "readme-cache")}
        self.port = _free_port()
        self.servers: list[subprocess.Popen] = []
        self.output = ""
        self._prerequisites()

    @property
    def data_home(self) -> Path:
        return self.home / ".local" / "share" / "aerialseg" / "data"

    def _prerequisites(self) -> None:
        """What a block uses but does not make: prepared datasets, a run's weights."""
        text, prepared = self.block.text, self.folder / "prepared"
        makes = {line.split()[2] for line in self.block.commands if line.startswith("aerialseg prepare ")}
        for dataset in ("potsdam", "vaihingen"):
            if f"--dataset {dataset}" in text and dataset not in makes:
                shutil.copytree(prepared / dataset, self.data_home / dataset)
        if "--data data/potsdam" in text and "prepare_dataset(" not in text:
            shutil.copytree(prepared / "potsdam", self.folder / "data" / "potsdam")
        if "--dataset mine" in text and "folder" not in makes:
            from aerialseg.data.prepare import prepare_folder

            files = [self.folder / name for name in ("tiles", "masks", "classes.toml")]
            prepare_folder(*files, self.data_home / "mine", val_fraction=0.25, patch_size=64)
        if "--model roads" in text or 'RunnerSpec("roads")' in text:  # what 'weights pull' installs: a stand-in
            from deepness_models import build_model

            folder = self.home / ".local" / "share" / "aerialseg" / "weights"
            folder.mkdir(parents=True, exist_ok=True)
            contract = {"model_type": "Segmentor", "class_names": {"0": "not_road", "1": "road"}, "resolution": 21}
            build_model(folder / "roads.onnx", outputs=2, metadata=contract | {"seg_thresh": 0.5, "tiles_overlap": 15})
        if "vectorize ortho_classes.tif" in text:  # the class map and probabilities predict writes
            self.run("aerialseg predict ortho.tif --model manet --probabilities")
        if "runs/manet-potsdam/best.safetensors" in text and "--out runs/manet-potsdam" not in text:
            (self.folder / "runs" / "manet-potsdam").mkdir(parents=True)
            shutil.copyfile(
                REPO / "weights" / "manet-r18-potsdam-sample.safetensors",
                self.folder / "runs" / "manet-potsdam" / "best.safetensors",
            )

    def adjusted(self, command: str) -> str:
        """The command with this world's places and the test's limits (see the module docstring)."""
        command = command.replace("/shared/", f"{self.folder}/shared/")
        command = command.replace("tcp://scheduler:8786", f"tcp://127.0.0.1:{self.port}")
        if command.startswith("dask scheduler"):
            command += f" --port {self.port} --no-dashboard"
        elif " dask worker " in f" {command} ":
            command += " --no-dashboard"
        if re.search(r"(^|-m )aerialseg train\b", command):
            command += " " + " ".join(TRAIN_LIMITS)
        return command

    def run(self, command: str) -> None:
        words = shlex.split(command)
        env = dict(self.env)
        while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
            key, value = words.pop(0).split("=", 1)
            env[key] = value
        words = [str(self.home) + word[1:] if word.startswith("~/") else word for word in words]
        if words[0] in ("dask", "torchrun"):  # this environment's, whatever PATH says
            words[0] = str(Path(sys.executable).parent / words[0])
        if Path(words[0]).name == "dask":  # a server: started here, stopped at the block's end
            self.servers.append(subprocess.Popen(words, cwd=self.folder, env=env, stderr=subprocess.DEVNULL))
            if words[1] == "worker":
                _wait_for_workers(f"tcp://127.0.0.1:{self.port}", len(self.servers) - 1)
            return
        if words[0] == "aerialseg" or (words[0] == "python" and words[1].startswith(("benchmarks/", "examples/"))):
            self._in_process(words, env)
            return
        result = subprocess.run(words, cwd=self.folder, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"

    def _in_process(self, words: list[str], env: dict[str, str]) -> None:
        """aerialseg and the scripts run here (torch is loaded once for the whole README), output redirects too."""
        redirect = None
        if ">" in words:
            redirect = self.folder / words[words.index(">") + 1]
            words = words[: words.index(">")]
        out = io.StringIO()
        with _inside(self.folder, env), contextlib.redirect_stdout(out):
            code = _exit_code(words)
        if redirect is not None:
            redirect.write_text(out.getvalue())
        assert code == 0, f"{' '.join(words)} exited {code}\n{out.getvalue()[-3000:]}"
        self.output = out.getvalue()
        for flag in ("-o", "--out-dir", "--markdown", "--output"):  # what the command said it writes is there
            if flag in words[2:]:
                written = Path(words[words.index(flag) + 1])
                written = written if written.is_absolute() else self.folder / written
                assert written.exists() and (written.is_dir() or written.stat().st_size > 0), f"no {written}"

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.terminate()
            server.wait(timeout=30)


@contextlib.contextmanager
def _inside(folder: Path, env: dict[str, str]) -> Iterator[None]:
    """This process in ``folder`` with exactly ``env`` (and its own argv), as a shell would run a command there."""
    saved_env, saved_cwd, saved_argv = dict(os.environ), os.getcwd(), sys.argv
    os.environ.clear()
    os.environ.update(env)
    os.chdir(folder)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        os.chdir(saved_cwd)
        sys.argv = saved_argv


def _exit_code(words: list[str]) -> int:
    if words[0] == "aerialseg":
        from aerialseg.cli import console
        from aerialseg.cli.main import main

        console.out.width = 200  # as in a wide terminal: the README shows unwrapped tables
        try:
            main(words[1:])
        except SystemExit as exc:
            return int(exc.code or 0)
        finally:
            console.out._width = None  # back to the console's own measure
        return 0
    sys.argv = words[1:]
    sys.path.insert(0, str(Path(words[1]).resolve().parent))  # as python puts a script's folder first
    try:
        runpy.run_path(words[1], run_name="__main__")
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        sys.path.pop(0)
    return 0


def _wait_for_workers(address: str, workers: int) -> None:
    from dask.distributed import Client

    with Client(address, timeout=60) as client:
        client.wait_for_workers(workers, timeout=120)


def _block_id(block: Block) -> str:
    first = block.commands[0].split("\n")[0] if block.commands else ""
    return f"line{block.line}-{re.sub(r'[^a-z]+', '-', first.lower())[:40].strip('-')}"


@pytest.mark.slow
@pytest.mark.parametrize("block", BLOCKS, ids=[_block_id(b) for b in BLOCKS])
def test_readme_example(block, template, tmp_path):
    runnable = [command for command in block.commands if _reason_not_run(command) is None]
    if not runnable:
        pytest.skip(f"not run here: {_reason_not_run(block.commands[0])}")
    if any(word in block.text for word in ISPRS_WORDS) and not (template / "isprs").exists():
        pytest.skip("needs the ISPRS sample patches in ../shared (set AERIALSEG_SHARED)")
    world = World(template, tmp_path / "world", block)
    try:
        for command in runnable:
            if block.language == "python":
                _run_python(world, command)
            else:
                world.run(world.adjusted(command))
            if block.language == "console":
                _check_shown_output(block, world.output)
    finally:
        world.stop()


def _run_python(world: World, code: str) -> None:
    code = re.sub(
        r'arch="manet", backbone="resnet18"\)\)', f'arch="manet", backbone="resnet18", {PYTHON_TRAIN_LIMITS}))', code
    )
    assert PYTHON_TRAIN_LIMITS in code, "the README's train() call changed: update the limits"
    with _inside(world.folder, world.env):
        exec(compile(code, f"{README}:{world.block.line}", "exec"), {"__name__": "__readme__"})


def _check_shown_output(block: Block, output: str) -> None:
    """The rows a console block shows are what the command prints (cells compared, not spacing)."""
    shown = [line for line in block.text.splitlines() if line and not line.startswith("$ ")]
    printed = [re.sub(r"[│┃]", " ", line).split() for line in output.splitlines()]
    for line in shown[1:]:  # the first is the table's title
        assert line.split() in printed, f"the README shows {line!r}; the command no longer prints it"
