"""aerialseg train / eval on the command line: outputs, JSON, tables, one-line errors."""

from __future__ import annotations

import dataclasses
import json

import pytest

from aerialseg.training.loop import TrainOptions
from aerialseg.weights import read_card


def test_train_then_eval(potsdam_prepared, tmp_path, cli):
    data, run_dir = str(potsdam_prepared.folder), tmp_path / "run"
    argv = [
        "train",
        "--data",
        data,
        "--out",
        str(run_dir),
        "--arch",
        "abcnet",
        "--batch-size",
        "2",
        "--crop",
        "64",
        "--max-steps",
        "2",
        "--workers",
        "0",
        "--half",
        "--json",
    ]
    code, out, err = cli(argv)
    assert code == 0, err
    result = json.loads(out)
    assert result["steps"] == 2 and result["stopped_early"]
    card = read_card(run_dir / "last.safetensors")
    assert card.arch == "abcnet" and card.metrics["split"] == "val"
    # the same run folder again without --resume: refused, nothing changed
    code, out, err = cli(argv)
    assert code == 1 and "--resume" in err and len(err.strip().splitlines()) == 1
    code, out, err = cli([*argv, "--resume", "--max-steps", "3"])
    assert code == 0 and json.loads(out)["steps"] == 3

    table = tmp_path / "table.md"
    evaluate = ["eval", "--data", data, "--weights", str(run_dir / "last.safetensors")]
    code, out, err = cli([*evaluate, "--tile-size", "256", "--overlap", "64", "--markdown", str(table)])
    assert code == 0, err
    assert "mean F1" in out and "confusion matrix" in out and "impervious_surfaces" in out
    text = table.read_text()
    assert "| F1 |" in text and "Means exclude clutter" in text and "eroded labels" in text
    code, out, err = cli([*evaluate, "--split", "val", "--patches", "--full", "--json"])
    assert code == 0, err
    result = json.loads(out)
    assert result["labels"] == "full" and len(result["confusion_matrix"]) == 6


def test_errors_are_one_line(tmp_path, cli):
    code, out, err = cli(["train", "--data", str(tmp_path), "--out", str(tmp_path / "r")])
    assert code == 1 and "no manifest.json" in err and "aerialseg prepare" in err
    assert len(err.splitlines()) == 1
    code, out, err = cli(["eval", "--data", str(tmp_path), "--weights", "nope"])
    assert code == 1 and len(err.splitlines()) == 1


@pytest.fixture
def train_options(monkeypatch):
    """The TrainOptions the command builds (the run itself is skipped)."""
    seen = []

    def fake_train(options, progress=None):
        seen.append(options)
        raise SystemExit(0)

    monkeypatch.setattr("aerialseg.training.loop.train", fake_train)
    return seen


def test_options_left_out_take_the_library_defaults(tmp_path, cli, train_options):
    cli(["train", "--data", str(tmp_path), "--out", str(tmp_path / "r")])
    assert train_options == [TrainOptions(data=tmp_path, out=tmp_path / "r")]  # --workers included
    defaults = {f.name: f.default for f in dataclasses.fields(TrainOptions)}
    assert train_options[0].workers == defaults["workers"]


def test_options_given_reach_the_run(tmp_path, cli, train_options):
    cli(
        ["train", "--data", str(tmp_path), "--out", str(tmp_path / "r"), "--arch", "ABCNet", "--workers", "3"]
        + ["--no-amp", "--val-split", "", "--seed", "7", "--half", "--backbone", "resnet18"]
    )
    (options,) = train_options
    assert (options.arch, options.backbone, options.workers, options.seed) == ("abcnet", "resnet18", 3, 7)
    assert options.amp is False and options.val_split is None and options.half
