"""Model names (``manet``, ``manet-potsdam``, ``abcnet-uavid``) choose the weights a user would pick by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from aerialseg.catalog import parse_query, score_of
from aerialseg.conventions import SAMPLE_WEIGHTS_MARK
from aerialseg.errors import UnknownModelError
from aerialseg.weights import choose_weights, load_model, read_weights, resolve_weights, save_weights


def _scored(make_weights, folder: Path, name: str, arch: str, backbone: str, dataset: str, **card) -> Path:
    """Weights with fixed tensors whose card says how they were trained, on what and what they scored.

    The tensors have six classes whatever ``dataset`` the card names (only the name matters here).
    """
    path = make_weights(folder / f"{name}.safetensors", arch=arch, backbone=backbone)
    tensors, original = read_weights(path)
    save_weights(tensors, original.replace(dataset=dataset, **card), path, overwrite=True)
    return path


def _validation(score: float, key: str = "mean_f1") -> dict:
    """What ``train`` records: the validation scores at the top, with the split's name."""
    return {"split": "val", "epoch": 3, key: score}


@pytest.fixture(scope="module")
def installed(tmp_path_factory, make_weights) -> Path:
    """A weights folder holding what a user accumulates: sample weights, two runs, other networks."""
    folder = tmp_path_factory.mktemp("installed")
    sample = SAMPLE_WEIGHTS_MARK + ", to exercise the pipeline"
    held_out = {"held_out_test": {"mean_f1": 91.0}}  # higher than any run: rank must not go by score alone
    _scored(make_weights, folder, "a-sample", "manet", "resnet18", "potsdam", training=sample, metrics=held_out)
    _scored(make_weights, folder, "b-run", "manet", "resnet18", "potsdam", training="run 1", metrics=_validation(60.0))
    _scored(make_weights, folder, "c-run", "manet", "resnet50", "vaihingen", metrics=_validation(80.5))
    _scored(make_weights, folder, "d-run", "manet", "resnet18", "potsdam", metrics={})  # no score
    _scored(make_weights, folder, "e-run", "abcnet", "resnet18", "uavid", metrics=_validation(48.0, "miou"))
    _scored(make_weights, folder, "f-sample", "abcnet", "resnet18", "vaihingen", training=sample)
    return folder


@pytest.fixture
def search_path(installed, monkeypatch, tmp_path):
    """Only the installed folder (and the package's own sample weights) on the search path."""
    monkeypatch.setenv("AERIALSEG_WEIGHTS", str(installed))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "empty-home"))
    return installed


@pytest.mark.parametrize(
    ("name", "expected", "candidates"),
    [
        ("manet", "c-run", 5),  # trained beats sample; the best validation score among the runs
        ("MANet", "c-run", 5),
        ("manet-potsdam", "b-run", 4),  # a scored run beats an unscored one, and sample weights of any score
        ("manet_r18", "b-run", 4),
        ("manet-resnet50", "c-run", 1),
        ("manet-vaih", "c-run", 1),  # a prefix that fits one word
        ("abcnet-uavid", "e-run", 1),
        ("abcnet-vaihingen", "f-sample", 1),  # only sample weights: chosen, with a warning
        ("uavid", "e-run", 1),
    ],
)
def test_a_name_chooses_the_weights_a_user_would(search_path, name, expected, candidates):
    choice = choose_weights(name)
    assert choice is not None and choice.entry.name == expected and choice.candidates == candidates
    assert resolve_weights(name) == search_path / f"{expected}.safetensors"
    assert (choice.warning() is not None) == expected.endswith("sample")


def test_the_choice_names_the_file_and_its_score(search_path):
    choice = choose_weights("manet")
    assert choice is not None
    assert choice.describe() == (
        f"--model manet: c-run (best of 5) from {search_path / 'c-run.safetensors'}, val split mean F1 80.5"
    )
    assert score_of({"held_out_test": {"mean_f1": 70.0}, **_validation(99.0)}, "potsdam") == (
        "held-out test mean F1",
        70.0,
    )
    assert score_of(_validation(48.0, "miou") | {"mean_f1": 60.0}, "uavid") == ("val split mIoU", 48.0)
    assert score_of({"split": "val", "mean_f1": float("nan")}, "potsdam") is None


def test_sample_weights_chosen_by_a_name_warn_with_the_ways_to_real_ones(search_path):
    choice = choose_weights("abcnet-vaihingen")
    assert choice is not None and choice.sample
    warning = choice.warning()
    assert warning is not None and warning.startswith("f-sample are sample weights")
    assert "aerialseg train --dataset vaihingen --arch abcnet" in warning and "weights import" in warning


def test_a_file_name_wins_over_a_query(search_path, make_weights):
    own = make_weights(search_path / "manet.safetensors", arch="abcnet")
    try:
        choice = choose_weights("manet")
        assert choice is not None and choice.by_name and choice.entry.path == own and choice.warning() is None
        model, card = load_model("manet")
        assert card.arch == "abcnet"
    finally:
        own.unlink()


def test_a_path_is_used_as_given(search_path):
    path = search_path / "b-run.safetensors"
    assert choose_weights(path) is None and resolve_weights(path) == path


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("ma", "'ma' fits several names (manet, maresunet); spell it out"),
        ("manet-abcnet", "names several architectures (manet, abcnet); name one"),
        ("manet-potsdam-vaihingen", "names several datasets (potsdam, vaihingen)"),
        ("maresunet", "no weights for maresunet (--model maresunet); installed: a-sample, b-run, c-run"),
        ("abcnet-potsdam", "get weights with 'aerialseg train --dataset potsdam --arch abcnet'"),
        ("manet-r34", "no weights for manet (resnet34)"),
        ("nonesuch", "no weights named 'nonesuch' and no architecture, backbone or dataset of that name"),
    ],
)
def test_a_name_that_fits_nothing_or_several_is_one_line(search_path, name, message):
    with pytest.raises(UnknownModelError) as info:
        resolve_weights(name)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_queries_read_words_not_files():
    assert parse_query("manet-r50-potsdam").__dict__ == {
        "text": "manet-r50-potsdam",
        "arch": "manet",
        "backbone": "resnet50",
        "dataset": "potsdam",
    }
    assert parse_query("my-weights") is None and parse_query("-") is None
    assert parse_query("manet-mine", extra_datasets=["Mine"]).dataset == "mine"
