"""aerialseg train / eval on the command line: outputs, JSON, tables, one-line errors."""

from __future__ import annotations

import json

from conftest import run_cli as run

from aerialseg.weights import read_card


def test_train_then_eval(potsdam_prepared, tmp_path, capsys):
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
    code, out, err = run(argv, capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["steps"] == 2 and result["stopped_early"]
    card = read_card(run_dir / "last.safetensors")
    assert card.arch == "abcnet" and card.metrics["split"] == "val"
    # the same run folder again without --resume: refused, nothing changed
    code, out, err = run(argv, capsys)
    assert code == 1 and "--resume" in err and len(err.strip().splitlines()) == 1
    code, out, err = run([*argv, "--resume", "--max-steps", "3"], capsys)
    assert code == 0 and json.loads(out)["steps"] == 3

    table = tmp_path / "table.md"
    evaluate = ["eval", "--data", data, "--weights", str(run_dir / "last.safetensors")]
    code, out, err = run([*evaluate, "--tile-size", "256", "--overlap", "64", "--markdown", str(table)], capsys)
    assert code == 0, err
    assert "mean F1" in out and "confusion matrix" in out and "impervious_surfaces" in out
    text = table.read_text()
    assert "| F1 |" in text and "Means exclude clutter" in text and "eroded labels" in text
    code, out, err = run([*evaluate, "--split", "val", "--patches", "--full", "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["labels"] == "full" and len(result["confusion_matrix"]) == 6


def test_errors_are_one_line(tmp_path, capsys):
    code, out, err = run(["train", "--data", str(tmp_path), "--out", str(tmp_path / "r")], capsys)
    assert code == 1 and "no manifest.json" in err and "aerialseg prepare" in err
    assert len(err.strip().splitlines()) == 1
    code, out, err = run(["eval", "--data", str(tmp_path), "--weights", "nope"], capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1
