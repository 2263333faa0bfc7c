"""The training loop on real ISPRS pixels: it learns, resumes exactly, keeps DDP replicas identical."""

from __future__ import annotations

import os
import shutil
import socket
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from aerialseg.errors import OutputExistsError, TrainingError
from aerialseg.training.checkpoint import CHECKPOINT_JSON, CHECKPOINT_TENSORS
from aerialseg.training.loop import TrainOptions, train
from aerialseg.weights import load_model, read_card, read_weights


def options(data, out, **changes):
    base = TrainOptions(data=data.folder, out=out, arch="manet", backbone="resnet18", batch_size=4, crop=96)
    return replace(base, **changes)


def test_a_few_dozen_steps_lower_the_loss_and_raise_train_miou(potsdam_prepared, tmp_path):
    losses = []
    result = train(
        options(potsdam_prepared, tmp_path / "run", epochs=12, lr=2e-3),
        progress=lambda e: losses.append(e.loss) if e.kind == "step" else None,
    )
    assert result.steps == 36 and len(result.history) == 12
    assert np.mean(losses[-6:]) < 0.8 * np.mean(losses[:6])
    first, last = result.history[0], result.history[-1]
    assert last["train_miou"] > first["train_miou"] + 0.05
    # the weights files are model cards a user can predict with
    card = read_card(result.last)
    assert card.arch == "manet" and card.backbone == "resnet18" and card.dataset == "potsdam"
    assert card.class_names[:2] == ["impervious_surfaces", "building"] and card.bands == ("R", "G", "B")
    best = read_card(result.best)
    assert best.metrics["split"] == "val" and best.metrics["mean_f1"] == pytest.approx(
        result.best_score * 100, abs=1e-3
    )
    model, _ = load_model(result.best)
    assert sum(p.numel() for p in model.parameters()) == 11_984_856 + 289 * 6
    log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert log[0].startswith("epoch,step,lr,train_loss") and len(log) == 13


def test_resume_continues_from_the_same_step_with_the_same_state(potsdam_prepared, tmp_path):
    # MAResU-Net has dropout, so the random stream must be restored too; the Potsdam recipe's
    # mosaic and random scales are on. Straight run: 2 epochs of 3 steps.
    settings = dict(arch="maresunet", epochs=2)
    straight = train(options(potsdam_prepared, tmp_path / "straight", **settings))
    # Same run stopped after 4 steps (mid epoch 2), then resumed.
    stopped = train(options(potsdam_prepared, tmp_path / "resumed", max_steps=4, **settings))
    assert stopped.stopped_early and stopped.steps == 4
    saved, _ = read_weights_checkpoint(tmp_path / "resumed")
    resumed = train(options(potsdam_prepared, tmp_path / "resumed", resume=True, **settings))
    assert resumed.steps == 6 and not resumed.stopped_early
    assert resumed.weights_sha256 == straight.weights_sha256
    a, _ = read_weights(straight.last)
    b, _ = read_weights(resumed.last)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the optimizer moments at the end agree as well, and the stop had saved real state
    end_a, _ = read_weights_checkpoint(tmp_path / "straight")
    end_b, _ = read_weights_checkpoint(tmp_path / "resumed")
    moments = [k for k in end_a if k.startswith(("opt.", "slow."))]
    assert moments and all(torch.equal(end_a[k], end_b[k]) for k in moments)
    assert any(not torch.equal(saved[k], end_b[k]) for k in moments)


def read_weights_checkpoint(folder: Path):
    from safetensors.torch import load_file

    return load_file(str(folder / CHECKPOINT_TENSORS)), None


def test_a_run_folder_with_a_checkpoint_needs_resume_or_overwrite(potsdam_prepared, tmp_path):
    train(options(potsdam_prepared, tmp_path / "run", max_steps=1))
    with pytest.raises(OutputExistsError, match="--resume"):
        train(options(potsdam_prepared, tmp_path / "run", max_steps=1))
    with pytest.raises(TrainingError, match="no checkpoint"):
        train(options(potsdam_prepared, tmp_path / "other", max_steps=1, resume=True))


def _ddp_worker(rank: int, port: int, data: str, out: str, results: str) -> None:
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    result = train(
        TrainOptions(data=Path(data), out=Path(out), arch="abcnet", batch_size=2, crop=96, epochs=2, device="cpu")
    )
    Path(results, f"rank{rank}.txt").write_text(f"{result.weights_sha256} {result.steps}")


def test_two_process_gloo_ddp_keeps_the_replicas_identical(potsdam_prepared, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(
        _ddp_worker, args=(port, str(potsdam_prepared.folder), str(tmp_path / "run"), str(tmp_path)), nprocs=2
    )
    digests = [(tmp_path / f"rank{r}.txt").read_text().split() for r in range(2)]
    # 12 patches, batches of 2 dealt to 2 processes: 3 steps per epoch each
    assert digests[0] == digests[1] and digests[0][1] == "6"
    # rank 0 wrote the weights it trained: the card's tensor hash is the replicas' hash
    assert read_card(tmp_path / "run" / "last.safetensors").sha256 == digests[0][0]


def test_gradient_accumulation_steps_once_per_n_batches(potsdam_prepared, tmp_path):
    # 12 patches in batches of 4: 3 batches per epoch -> steps after batches 2 and 3 (the epoch's end)
    result = train(options(potsdam_prepared, tmp_path / "run", epochs=1, accumulate=2))
    assert result.steps == 2
    state, _ = read_weights_checkpoint(tmp_path / "run")
    assert state["opt.0.step"].item() == 2


def test_pretrained_backbone_weights_are_the_starting_point(potsdam_prepared, tmp_path):
    from safetensors.torch import save_file

    from aerialseg.models.backbones import build_resnet

    torch.manual_seed(3)
    imagenet = {k: v.clone() for k, v in build_resnet("resnet18").state_dict().items()}
    imagenet["fc.weight"] = torch.zeros(1000, 512)  # a classifier, as in torchvision files: dropped
    save_file(imagenet, str(tmp_path / "resnet18.safetensors"))
    # learning rates 0: one step changes no weight, so the written weights show the start
    result = train(
        options(
            potsdam_prepared,
            tmp_path / "run",
            max_steps=1,
            lr=0.0,
            backbone_lr=0.0,
            pretrained_backbone=tmp_path / "resnet18.safetensors",
        )
    )
    tensors, _ = read_weights(result.last)
    for name in ("conv1.weight", "layer4.1.conv2.weight", "layer2.0.downsample.0.weight"):
        assert torch.equal(tensors[f"backbone.{name}"], imagenet[name])


def test_several_training_splits(potsdam_prepared, tmp_path):
    # train (12 patches) + val (4) in batches of 4: 4 steps per epoch
    result = train(options(potsdam_prepared, tmp_path / "run", epochs=1, train_split="train,val"))
    assert result.steps == 4


@pytest.fixture(scope="module")
def stopped_run(potsdam_prepared, tmp_path_factory):
    """A run folder holding the checkpoint of a run stopped after one step."""
    out = tmp_path_factory.mktemp("stopped") / "run"
    train(options(potsdam_prepared, out, max_steps=1))
    return out


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-5000])


def _json_edit(change):
    def edit(path: Path) -> None:
        import json

        path.write_text(json.dumps(change(json.loads(path.read_text()))))

    return edit


@pytest.mark.parametrize(
    "damaged, damage, words",
    [
        (CHECKPOINT_TENSORS, _truncate, "checkpoint tensors cannot be read"),
        (CHECKPOINT_TENSORS, Path.unlink, "checkpoint tensors are missing"),
        (CHECKPOINT_JSON, lambda p: p.write_text("{ not json"), "checkpoint is not valid JSON"),
        (CHECKPOINT_JSON, _json_edit(lambda m: m | {"sha256": 5}), "checkpoint lacks or mistypes ['sha256']"),
        (CHECKPOINT_JSON, _json_edit(lambda m: m | {"state": {"epoch": "x"}}), "checkpoint cannot be restored"),
        (CHECKPOINT_JSON, _json_edit(lambda m: m | {"param_groups": []}), "checkpoint cannot be restored"),
    ],
)
def test_resuming_from_a_damaged_checkpoint_is_one_line_naming_the_file(
    potsdam_prepared, stopped_run, tmp_path, cli, damaged, damage, words
):
    out = tmp_path / "run"
    shutil.copytree(stopped_run, out)
    damage(out / damaged)
    argv = ["train", "--data", str(potsdam_prepared.folder), "--out", str(out), "--arch", "manet"]
    code, _, err = cli([*argv, "--backbone", "resnet18", "--batch-size", "4", "--crop", "96", "--resume"])
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and lines[0].startswith(f"error: {out}"), err
    assert words in lines[0], lines[0]
