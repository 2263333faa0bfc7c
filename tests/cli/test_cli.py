"""The command line: exit codes, one-line errors, option forwarding, and a fast --help."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from aerialseg.card import ModelCard
from aerialseg.conventions import SAMPLE_ORTHOPHOTO
from aerialseg.data.classes import DATASETS
from aerialseg.hardware import Hardware
from aerialseg.models import create_model
from aerialseg.weights import save_weights


@pytest.fixture
def weights_file(tmp_path):
    info = DATASETS["potsdam"]
    card = ModelCard(
        arch="abcnet", backbone="resnet18", classes=info.classes, bands=info.bands, gsd_m=0.05, dataset="potsdam"
    )
    path = tmp_path / "abc.safetensors"
    save_weights(create_model("abcnet"), card, path)
    return path


def test_commands_that_run_no_network_do_not_import_torch(weights_file):
    code = (
        "import sys\n"
        "from aerialseg.cli.main import main\n"
        f"for argv in (['--help'], ['models'], ['weights', 'info', {str(weights_file)!r}], ['export', '--help'],\n"
        "             ['vectorize', '--help'], ['predict', '--help'], ['doctor', '--help'], ['eval', '--help'],\n"
        "             ['train', '--help'], ['prepare', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 0, (argv, e.code)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'onnxruntime' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_version(cli):
    code, out, _ = cli(["--version"])
    assert code == 0 and out.startswith("aerialseg 0.")


def test_models_lists_every_architecture_with_reference_counts(cli):
    code, out, _ = cli(["models", "--json"])
    data = json.loads(out)
    assert code == 0
    assert {a["name"]: a["params_6_classes"] for a in data["architectures"]} == {
        "manet-resnet50": 35_860_622,
        "manet-resnet18": 11_986_590,
        "maresunet-resnet34": 26_276_510,
        "maresunet-resnet18": 16_168_350,
        "abcnet-resnet18": 13_666_563,
    }
    code, out, _ = cli(["models"])
    assert code == 0 and "35,860,622" in out and "MAResU-Net" in out


def test_models_shows_weights_installed_by_name(cli, tmp_path, monkeypatch, weights_file):
    monkeypatch.setenv("AERIALSEG_WEIGHTS", str(weights_file.parent))
    code, out, _ = cli(["models", "--json"])
    entry = next(w for w in json.loads(out)["weights"] if w["name"] == "abc")
    assert entry["card"]["dataset"] == "potsdam"


def test_weights_info_prints_the_card(cli, weights_file):
    code, out, _ = cli(["weights", "info", str(weights_file), "--json"])
    assert code == 0 and json.loads(out)["bands"] == ["R", "G", "B"]
    code, out, _ = cli(["weights", "info", str(weights_file)])
    assert code == 0 and "impervious_surfaces" in out and "#0000ff" in out


def test_errors_are_one_line_with_exit_code_1(cli, tmp_path):
    code, out, err = cli(["weights", "info", "no-such-model"])
    assert code == 1 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("error: no weights named 'no-such-model'")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["export"], "error: Missing argument 'weights'. (see 'aerialseg export --help')"),
        (["weights"], "error: Missing command. (see 'aerialseg weights --help')"),
        (["models", "--colour"], "error: No such option: --colour"),
        (["eval", "--data", ".", "-m", "m", "--precision", "fp8"], "'fp8' is not one of 'auto', 'fp32', 'bf16'"),
        (["weights", "import", "x.ckpt", "-o", "y", "--arch", "unet"], "'unet' is not one of 'manet'"),
        (["train", "--data", ".", "--out", "r", "--workers", "-1"], "--workers"),
    ],
)
def test_usage_errors_are_one_line_with_exit_code_2(cli, argv, message):
    code, out, err = cli(argv)
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and message in err


def test_bare_command_prints_the_help(cli):
    code, out, _ = cli([])
    assert code == 2 and "Usage: aerialseg" in out and "predict" in out


def test_api_functions_are_not_hidden_by_modules_of_the_same_name():
    import aerialseg
    from aerialseg.diagnosis import doctor
    from aerialseg.evaluation import evaluate

    assert aerialseg.doctor is doctor and aerialseg.evaluate is evaluate
    assert aerialseg.PredictOptions().tiling == aerialseg.TilingOptions()
    assert callable(aerialseg.predict_batch) and aerialseg.RunnerSpec("m").backend == "auto"


def test_export_refuses_an_existing_output(cli, tmp_path, weights_file):
    target = tmp_path / "m.onnx"
    target.write_bytes(b"old")
    code, _, err = cli(["export", str(weights_file), "-o", str(target)])
    assert code == 1 and len(err.splitlines()) == 1 and "output exists; pass --overwrite" in err
    assert target.read_bytes() == b"old"


def test_export_forwards_options(cli, tmp_path, weights_file, monkeypatch):
    seen = {}

    def fake_export(weights, output_path, **options):
        seen.update(options, weights=weights, output_path=output_path)
        raise SystemExit(0)

    monkeypatch.setattr("aerialseg.export.export_onnx", fake_export)
    cli(
        [
            "export",
            str(weights_file),
            "-o",
            str(tmp_path / "m.onnx"),
            "--opset",
            "17",
            "--fp16",
            "--static-size",
            "512",
            "--output-kind",
            "logits",
            "--min-agreement",
            "0.95",
            "--overwrite",
        ],
    )
    assert seen["opset"] == 17 and seen["fp16"] and seen["static_size"] == 512
    assert seen["output"] == "logits" and seen["min_agreement"] == 0.95 and seen["overwrite"]


def test_export_writes_a_checked_file(cli, tmp_path, weights_file):
    code, out, _ = cli(["export", str(weights_file), "-o", str(tmp_path / "m.onnx"), "--opset", "17"])
    assert code == 0 and "argmax agreement" in out and "wrote" in out
    assert (tmp_path / "m.onnx").stat().st_size > 1_000_000


def test_weights_import_from_a_geoseg_style_checkpoint(cli, tmp_path):
    state = create_model("manet", "resnet18", num_classes=6).state_dict()
    torch.save(
        {"state_dict": {f"net.{k}": v for k, v in state.items()}, "pytorch-lightning_version": "2.6.6"},
        tmp_path / "manet.ckpt",
    )
    out_file = tmp_path / "manet.safetensors"
    argv = [
        "weights",
        "import",
        str(tmp_path / "manet.ckpt"),
        "--arch",
        "manet",
        "--backbone",
        "resnet18",
        "--num-classes",
        "6",
        "--dataset",
        "vaihingen",
        "-o",
        str(out_file),
    ]
    code, out, _ = cli(argv)
    assert code == 0 and "bands NIR-R-G" in out and out_file.exists()
    code, _, err = cli(argv)
    assert code == 1 and len(err.splitlines()) == 1 and "--overwrite" in err


NEON = str(SAMPLE_ORTHOPHOTO)
SAMPLE = "manet-r18-potsdam-sample"  # tiles 512, overlap 64
GPUS = Hardware("test CPU", 2, frozenset(), ("GPU A", "GPU B"))
NO_GPU = Hardware("test CPU", 2, frozenset())


@pytest.fixture
def no_work(monkeypatch):
    """Any start of a command's work (engine, network, inputs, doctor, eval, vectorize) fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("work started")

    for target in (
        "aerialseg.runners.RunnerSpec.resolve",
        "aerialseg.runners.RunnerSpec.open",
        "aerialseg.batch.expand_inputs",
        "aerialseg.batch.predict_batch",
        "aerialseg.diagnosis.doctor",
        "aerialseg.evaluation.evaluate",
        "aerialseg.vector.run.vectorize",
    ):
        monkeypatch.setattr(target, refuse)


@pytest.fixture
def machine(monkeypatch):
    """``machine(hardware)``: aerialseg sees that machine (read without torch)."""
    return lambda hardware: monkeypatch.setattr("aerialseg.hardware.detect_hardware", lambda use_torch=False: hardware)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["predict", NEON, "-m", SAMPLE, "--scale", "0"], "'--scale': 0 is not a positive number"),
        (["predict", NEON, "-m", SAMPLE, "--scale", "-2"], "'--scale': -2 is not a positive number"),
        (["predict", NEON, "-m", SAMPLE, "--scale", "nan"], "'--scale': nan is not a positive number"),
        (["predict", NEON, "-m", SAMPLE, "--tile-size", "0"], "'--tile-size'"),
        (["predict", NEON, "-m", SAMPLE, "--overlap", "600"], "600 is not below the tile size 512 (the model's)"),
        (["predict", "--tile-size", "256", "--overlap", "256", NEON, "-m", SAMPLE], "'--overlap': overlap 256 is not"),
        (["predict", NEON, "--tile-size", "64", "-m", SAMPLE], "'--tile-size': overlap 64 (the model's) is not below"),
        (["predict", NEON, "-m", SAMPLE, "--batch-size", "0"], "'--batch-size'"),
        (["predict", NEON, "-m", SAMPLE, "--min-agreement", "1.5"], "'--min-agreement'"),
        (["predict", NEON, "-m", SAMPLE, "--gsd", "nativ"], "'nativ' is not one of 'auto', 'native'"),
        (["predict", NEON, "-m", SAMPLE, "--vectorize", "building", "--objects-format", "shp"], "'shp' is not one of"),
        (["predict", NEON, "-m", SAMPLE, "--device", "gpu"], "'gpu' is not a device; use cpu, cuda or cuda:N"),
        (["predict", NEON, "-m", SAMPLE, "--device", "cuda:x"], "'cuda:x' is not a device"),
        (["doctor", NEON, "-m", SAMPLE, "--scale", "-1"], "'--scale': -1 is not a positive number"),
        (["doctor", NEON, "-m", SAMPLE, "--overlap", "512"], "overlap 512 is not below the tile size 512"),
        (["doctor", NEON, "-m", SAMPLE, "--device", "mps"], "'mps' is not a device"),
        (["eval", "--data", NEON, "-m", SAMPLE, "--overlap", "700"], "overlap 700 is not below"),
        (["eval", "--data", NEON, "-m", SAMPLE, "--batch-size", "0"], "'--batch-size'"),
        (["eval", "--data", NEON, "-m", SAMPLE, "--min-agreement", "-0.1"], "'--min-agreement'"),
        (["eval", "--data", NEON, "-m", SAMPLE, "--device", "cuda:-1"], "'cuda:-1' is not a device"),
        (["vectorize", NEON, "-o", "objects.shp"], "objects.shp: '.shp' is no vector format; end it in .fgb"),
        (["vectorize", NEON, "-o", "objects"], "objects: no suffix is no vector format"),
        (["vectorize", NEON, "-o", "o.gpkg", "--min-area", "-1"], "'--min-area'"),
        (["vectorize", NEON, "-o", "o.gpkg", "--simplify", "nanpx"], "give a tolerance like 1px or 0.3m"),
        (["vectorize", NEON, "-o", "o.gpkg", "--simplify", "-1m"], "give a tolerance like 1px or 0.3m"),
        (["vectorize", NEON, "-o", "o.gpkg", "--strip-rows", "0"], "'--strip-rows'"),
    ],
)
def test_impossible_options_are_usage_errors_before_any_work(cli, no_work, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    code, out, err = cli([*argv, *(["-o", "out.tif"] if argv[0] == "predict" else [])])
    assert code == 2 and out == "", err
    assert len(err.splitlines()) == 1 and message in err, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("hardware", "device", "words"),
    [
        (NO_GPU, "cuda", ["cuda: no CUDA GPU is available", "--device cpu"]),
        (NO_GPU, "cuda:0", ["cuda:0: no CUDA GPU is available", "--device cpu"]),
        (GPUS, "cuda:2", ["cuda:2: this machine has 2 CUDA GPUs (cuda:0 to cuda:1)", "or cpu"]),
        (replace(GPUS, cuda_devices=("GPU A",)), "cuda:3", ["cuda:3: this machine has 1 CUDA GPU (cuda:0)"]),
    ],
)
@pytest.mark.parametrize("command", ["predict", "doctor", "eval"])
def test_a_device_this_machine_lacks_is_named_with_the_alternative(
    cli, no_work, machine, hardware, device, words, command
):
    machine(hardware)
    argv = ["eval", "--data", "."] if command == "eval" else [command, NEON]
    code, _, err = cli([*argv, "-m", SAMPLE, "--device", device])
    assert code == 2 and len(err.splitlines()) == 1 and "'--device'" in err
    assert all(word in err for word in words), err


def test_a_device_this_machine_has_or_may_have_is_accepted(cli, no_work, machine):
    for hardware, device in [(GPUS, "cuda:1"), (GPUS, "cuda"), (replace(GPUS, cuda_count_known=False), "cuda:7")]:
        machine(hardware)
        code, _, err = cli(["predict", NEON, "-m", SAMPLE, "--device", device])  # past the command line, into work
        assert code == 1 and "unexpected error (AssertionError: work started)" in err


def test_a_missing_gpu_is_refused_without_importing_torch(tmp_path):
    code = (
        "import sys\n"
        "from aerialseg.cli.main import main\n"
        "try:\n"
        f"    main(['predict', {NEON!r}, '-m', {SAMPLE!r}, '-o', {str(tmp_path / 'o.tif')!r}, '--device', 'cuda:3'])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 2, e.code\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    hidden = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no GPU, on any machine
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=hidden)
    assert done.returncode == 0, done.stderr
    assert "cuda:3: no CUDA GPU is available; use --device cpu" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_control_characters_in_a_path_reach_the_terminal_escaped(cli, tmp_path, abcnet_weights):
    name = str(tmp_path / "evil\x1b[2J\nname.tif")
    Path(name).write_bytes(b"not a raster")  # named explicitly: taken as given, although [ reads as a pattern
    code, _, err = cli(["predict", name, "-m", str(abcnet_weights), "--backend", "torch", "--precision", "fp32"])
    assert code == 1
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert "\x1b" not in err and len(errors) == 1
    assert "evil\\x1b[2J\\nname.tif" in errors[0]
