"""train(): the papers' recipe on a prepared dataset, resumable, single- or multi-process.

One epoch visits every training patch once in an order drawn from (seed, epoch); batches
are dealt round-robin to the DDP processes; an optimizer step follows every
``accumulate`` batches. After each epoch (or at ``max_steps``) the network is validated on
the validation split, ``last.safetensors`` and, when the monitored score improves,
``best.safetensors`` are written as model-card weights files, a row is appended to
``log.csv``, and the resume checkpoint is saved. Ctrl-C also saves it, after the current
step, so ``--resume`` continues from the same step with the same optimizer state and data
order as if nothing had happened.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..allocator import keep_freed_memory
from ..card import ModelCard
from ..data.datasets import PatchDataset, TrainingView, collate
from ..data.manifest import Manifest
from ..data.store import resolve_dataset
from ..errors import OutputExistsError, TrainingError
from ..models import create_model, get_spec
from ..models.standardize import Standardize
from ..weights import save_weights, tensors_sha256
from .checkpoint import CHECKPOINT_JSON, TrainState, load_checkpoint, save_checkpoint
from .distributed import World, check_replicas, init_world, sync_buffers
from .losses import SegmentationLoss
from .optim import Lookahead, lr_factor, parameter_groups, set_epoch_lr
from .outputs import append_log, band_statistics, training_summary
from .recipes import Recipe, recipe_for
from .runs import install_weights, latest_run, new_run_folder
from .validation import global_scores, validate

__all__ = ["TrainOptions", "TrainEvent", "TrainResult", "train"]


@dataclass(frozen=True)
class TrainOptions:
    """Settings of a run. ``None`` fields take the dataset's recipe value (:mod:`.recipes`).

    ``batch_size`` is per process. ``train_split`` may name several splits, comma-separated
    (UAVid's final models train on ``train,val``, as GeoSeg does). ``max_steps`` stops early
    (smoke runs, sample weights); ``checkpoint_every`` saves the resume checkpoint every that
    many steps as well as at each epoch end. ``half`` stores the weights files in float16.

    ``data`` is a prepared dataset's folder; without it, ``dataset`` names one in the data
    folder (:mod:`aerialseg.data.store`). ``out`` is the run folder; without it the run goes
    to a new folder under the data folder's ``runs`` (with ``resume``: the newest run of this
    dataset and network) and ``install`` (default: when ``out`` is None) copies its best
    weights into the user weights folder at the end (:mod:`.runs`).
    """

    data: Path | None = None
    out: Path | None = None
    dataset: str | None = None
    install: bool | None = None
    arch: str = "manet"
    backbone: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    crop: int | None = None
    lr: float | None = None
    backbone_lr: float | None = None
    weight_decay: float | None = None
    schedule: str | None = None
    accumulate: int = 1
    workers: int = 0
    seed: int = 42
    device: str | None = None
    amp: bool = True
    pretrained_backbone: Path | None = None
    trust_pickle: bool = False
    resume: bool = False
    overwrite: bool = False
    max_steps: int | None = None
    checkpoint_every: int = 0
    train_split: str = "train"
    val_split: str | None = "val"
    half: bool = False


@dataclass(frozen=True)
class TrainEvent:
    """Progress: ``kind`` is ``step`` (after an optimizer step) or ``epoch`` (after validation, with ``row``)."""

    kind: str
    epoch: int
    epochs: int
    batch: int
    batches: int
    step: int
    loss: float
    lr: float
    row: dict[str, float | int | str] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainResult:
    """Where the weights went and the per-epoch log rows."""

    out: Path
    last: Path
    best: Path | None
    steps: int
    epochs_done: int
    best_score: float | None
    history: list[dict[str, float | int | str]]
    stopped_early: bool
    weights_sha256: str
    installed: Path | None = None


def train(options: TrainOptions, progress: Callable[[TrainEvent], None] | None = None) -> TrainResult:
    """Train as :class:`TrainOptions` say; see the module docstring."""
    manifest = Manifest.load(_data_folder(options))
    world = init_world(options.device)
    spec = get_spec(options.arch, options.backbone)
    out = (
        Path(options.out)
        if options.out is not None
        else _run_folder(options, manifest, spec.arch, spec.backbone, world)
    )
    _check_out(out, options, world)
    recipe = recipe_for(manifest.dataset).replace(
        epochs=options.epochs,
        batch_size=options.batch_size,
        crop=options.crop,
        lr=options.lr,
        backbone_lr=options.backbone_lr,
        weight_decay=options.weight_decay,
        schedule=options.schedule,
    )
    try:
        lr_factor(0, recipe.schedule, recipe.epochs)  # an unknown schedule fails here, before any work
    except ValueError as exc:
        raise TrainingError(str(exc)) from None
    torch.manual_seed(options.seed)
    if world.device.type == "cuda":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    else:
        keep_freed_memory()  # before the loader forks its workers, so they keep their pages too
    run = _Run(options, manifest, recipe, world, out, progress)
    try:
        result = run.fit()
    finally:
        if world.distributed:
            torch.distributed.destroy_process_group()
    install = options.out is None if options.install is None else options.install
    if install and world.is_main:
        weights = result.best or result.last
        installed = install_weights(weights, out, spec.arch, spec.backbone, options.dataset or manifest.dataset)
        result = replace(result, installed=installed)
    return result


def _data_folder(options: TrainOptions) -> Path:
    """The prepared dataset: ``data`` when given, else the data folder's ``dataset``."""
    if options.data is not None:
        return Path(options.data)
    if options.dataset is None:
        raise TrainingError(
            "no dataset to train on", hint="pass --dataset NAME (see 'aerialseg models') or --data FOLDER"
        )
    return resolve_dataset(options.dataset)


def _run_folder(options: TrainOptions, manifest: Manifest, arch: str, backbone: str, world: World) -> Path:
    """A new run folder under the data folder (the newest of this network and dataset for ``resume``).

    Under torchrun the first process names it and the others take its name, so a start
    astride a second boundary cannot split one run into two folders.
    """
    label = options.dataset or manifest.dataset  # a user's own dataset by its name, not 'folder'
    if options.resume:
        folder = latest_run(label, arch, backbone, CHECKPOINT_JSON)
    else:
        folder = new_run_folder(label, arch, backbone)
    if world.distributed:
        chosen = [str(folder)]
        torch.distributed.broadcast_object_list(chosen, src=0)
        folder = Path(chosen[0])
    return folder


def _check_out(out: Path, options: TrainOptions, world: World) -> None:
    has_checkpoint = (out / CHECKPOINT_JSON).is_file()
    if options.resume and not has_checkpoint:
        raise TrainingError("has no checkpoint to resume from", path=out, hint="start without --resume")
    if has_checkpoint and not (options.resume or options.overwrite):
        raise OutputExistsError(
            "run folder holds a training checkpoint", path=out, hint="pass --resume to continue or --overwrite"
        )
    if world.is_main:
        out.mkdir(parents=True, exist_ok=True)


class _Run:
    """One training run's objects and its epoch/step loop."""

    def __init__(
        self,
        options: TrainOptions,
        manifest: Manifest,
        recipe: Recipe,
        world: World,
        out: Path,
        progress: Callable[[TrainEvent], None] | None,
    ):
        self.options, self.manifest, self.recipe, self.world, self.out = options, manifest, recipe, world, out
        self.progress = progress or (lambda event: None)
        self.spec = get_spec(options.arch, options.backbone)
        model = create_model(self.spec.arch, self.spec.backbone, len(manifest.classes), len(manifest.bands))
        if options.pretrained_backbone and not options.resume:
            from ..checkpoint_import import load_backbone_weights

            load_backbone_weights(model, options.pretrained_backbone, options.trust_pickle)
        self.model = model.to(world.device)
        self.encoder_prefix = model.encoder_prefix
        self.ddp: torch.nn.parallel.DistributedDataParallel | None = None
        if world.distributed:
            ids = [world.device.index] if world.device.type == "cuda" else None
            self.ddp = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.net: torch.nn.Module = self.model if self.ddp is None else self.ddp  # what training steps call
        self.standardize = Standardize(*band_statistics(manifest.bands)).to(world.device)
        groups = parameter_groups(self.model, self.encoder_prefix, recipe.lr, recipe.backbone_lr, recipe.weight_decay)
        self.optimizer = Lookahead(torch.optim.AdamW(groups), recipe.lookahead_k, recipe.lookahead_alpha)
        self.amp = options.amp and world.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.loss = SegmentationLoss(manifest.ignore_index)
        pairs = [pair for split in options.train_split.split(",") for pair in manifest.patch_pairs(split.strip())]
        patches = PatchDataset(pairs)
        if len(patches) == 0:
            raise TrainingError(f"split {options.train_split!r} has no patches", path=manifest.folder)
        self.view = TrainingView(patches, recipe.augmentation, manifest.ignore_index, options.seed)
        self.val_pairs = manifest.patch_pairs(options.val_split) if options.val_split else []
        self.state = TrainState()
        if options.resume:
            self.state, _ = load_checkpoint(out, self.model, self.optimizer, self.scaler)
        k = len(manifest.classes)
        # the epoch's pixel counts (label * K + prediction), on the device: a host copy of every
        # batch's labels and argmax would stall a GPU each step
        self.train_counts = torch.zeros(k * k, dtype=torch.int64, device=world.device)
        self.last_loss = float("nan")  # of the latest optimizer step; nan until the first one

    # --- data order -------------------------------------------------------------------------------
    def batches(self, epoch: int) -> list[list[tuple[int, int]]]:
        """The calling process's batches of (epoch, index) keys; drop-last, equal count on every process."""
        n, size = len(self.view), self.recipe.batch_size
        order = np.random.default_rng([self.options.seed, epoch, 7]).permutation(n)
        if n < size:  # tiny datasets: repeat the order to fill one batch
            order = np.resize(order, size)
        whole = [order[i : i + size] for i in range(0, len(order) - size + 1, size)]
        per_process = len(whole) // self.world.size
        if per_process == 0:
            raise TrainingError(
                f"{n} training patches make fewer batches of {size} than processes ({self.world.size})",
                hint="lower --batch-size",
            )
        mine = whole[self.world.rank :: self.world.size][:per_process]
        return [[(epoch, int(i)) for i in batch] for batch in mine]

    # --- loop -------------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        history: list[dict] = []
        stopped = False
        epoch = self.state.epoch
        try:
            while epoch < self.recipe.epochs and not stopped:
                stopped = self.run_epoch(epoch)
                if self.state.batch == 0 or stopped:  # epoch finished, or stopped early: validate, save
                    history.append(self.end_epoch(epoch))
                epoch = self.state.epoch
        except KeyboardInterrupt:
            self.save_checkpoint()
            raise
        check_replicas(self.world, self.model)
        best = self.out / "best.safetensors"
        final = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        return TrainResult(
            out=self.out,
            last=self.out / "last.safetensors",
            best=best if best.exists() else None,
            steps=self.state.step,
            epochs_done=self.state.epoch,
            best_score=self.state.best,
            history=history,
            stopped_early=stopped,
            weights_sha256=tensors_sha256(final),
        )

    def run_epoch(self, epoch: int) -> bool:
        """Train from ``state.batch`` to the epoch's end; True when ``max_steps`` stopped it."""
        options, state = self.options, self.state
        set_epoch_lr(self.optimizer, lr_factor(epoch, self.recipe.schedule, self.recipe.epochs))
        batches = self.batches(epoch)
        loader = torch.utils.data.DataLoader(
            self.view,
            batch_sampler=batches[state.batch :],
            num_workers=options.workers,
            collate_fn=collate,
            # its own generator: a loader drawing from the global one would shift dropout's
            # random stream by one draw per loader, so a resumed run would differ
            generator=torch.Generator().manual_seed(options.seed + epoch),
        )
        self.train_counts.zero_()
        self.net.train()
        losses = []
        for position, (images, labels) in enumerate(loader, start=state.batch):
            last_micro = (position + 1) % options.accumulate == 0 or position + 1 == len(batches)
            losses.append(self.forward_backward(images, labels, sync=last_micro))
            if not last_micro:
                continue
            self.optimizer_step()
            state.step += 1
            state.batch = position + 1
            loss = float(torch.stack(losses).mean())  # one device sync per optimizer step
            losses.clear()
            if not math.isfinite(loss):
                raise TrainingError(f"the loss became {loss} at step {state.step}", hint="lower --lr")
            self.last_loss = loss
            self.progress(
                TrainEvent("step", epoch, self.recipe.epochs, state.batch, len(batches), state.step, loss, self.lr())
            )
            if options.checkpoint_every and state.step % options.checkpoint_every == 0:
                self.save_checkpoint()
            if options.max_steps is not None and state.step >= options.max_steps:
                if state.batch == len(batches):
                    state.epoch, state.batch = epoch + 1, 0
                return True
        state.epoch, state.batch = epoch + 1, 0
        return False

    def forward_backward(self, images: torch.Tensor, labels: torch.Tensor, sync: bool) -> torch.Tensor:
        images = self.standardize(images.to(self.world.device))
        labels = labels.to(self.world.device)
        context = self.ddp.no_sync() if self.ddp is not None and not sync else nullcontext()
        with context:
            with torch.autocast("cuda", dtype=torch.float16, enabled=self.amp):
                outputs = self.net(images)
                loss = self.loss(outputs, labels) / self.options.accumulate
            self.scaler.scale(loss).backward()
        main = outputs[0] if isinstance(outputs, tuple) else outputs
        k = main.shape[1]
        keep = (labels >= 0) & (labels < k)  # the ignore index (255) and anything else outside the classes
        self.train_counts += torch.bincount(labels[keep] * k + main.detach().argmax(1)[keep], minlength=k * k)
        return loss.detach() * self.options.accumulate

    def optimizer_step(self) -> None:
        if self.amp:
            inner = self.optimizer.optimizer
            self.optimizer.step(lambda: self.scaler.step(inner))
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad()

    def lr(self) -> float:
        return max(group["lr"] for group in self.optimizer.param_groups)

    # --- end of an epoch ---------------------------------------------------------------------------
    def end_epoch(self, epoch: int) -> dict[str, float | int | str]:
        started = time.perf_counter()
        train_loss = round(self.last_loss, 5)
        classes = self.manifest.classes
        k = len(classes)
        train_scores = global_scores(self.world, self.train_counts.cpu().numpy().reshape(k, k), classes)
        row: dict[str, float | int | str] = {
            "epoch": epoch + 1,
            "step": self.state.step,
            "lr": self.lr(),
            "train_loss": train_loss,
            "train_miou": round(train_scores.miou, 5),
            "train_mean_f1": round(train_scores.mean_f1, 5),
        }
        metrics: dict[str, object] = {}
        sync_buffers(self.world, self.model)
        if self.val_pairs:
            ignore = self.manifest.ignore_index
            val = validate(self.model, self.standardize, self.val_pairs, classes, ignore, self.world, self.amp)
            row |= {"val_miou": round(val.miou, 5), "val_mean_f1": round(val.mean_f1, 5), "val_oa": round(val.oa, 5)}
            metrics = {"split": self.options.val_split, "epoch": epoch + 1, **val.to_dict()}
            score = val.miou if self.recipe.monitor == "miou" else val.mean_f1
        else:
            score = None
        row["seconds_validation"] = round(time.perf_counter() - started, 2)
        state = self.state  # every process tracks the best: the validation scores are global
        improved = score is not None and not math.isnan(score) and (state.best is None or score > state.best)
        if improved:
            state.best, state.best_epoch = score, epoch + 1
        if self.world.is_main:
            self.write_weights(epoch, metrics, improved)
            append_log(self.out / "log.csv", row)
        self.save_checkpoint()
        check_replicas(self.world, self.model)
        self.progress(
            TrainEvent(
                "epoch",
                epoch,
                self.recipe.epochs,
                self.state.batch,
                0,
                self.state.step,
                train_loss,
                self.lr(),
                row,
            )
        )
        return row

    def card(self, epoch: int, metrics: dict[str, object]) -> ModelCard:
        m = self.manifest
        mean, std = band_statistics(m.bands)
        return ModelCard(
            arch=self.spec.arch,
            backbone=self.spec.backbone,
            classes=m.classes,
            bands=m.bands,
            mean=mean,
            std=std,
            gsd_m=m.gsd_m,
            dataset=self.options.dataset if m.dataset == "folder" and self.options.dataset else m.dataset,
            training=training_summary(
                self.recipe, epoch, self.state.step, self.world.size, self.options.accumulate, self.options.seed
            ),
            metrics=metrics,
            source=f"trained on {m.dataset} prepared at {m.folder} (split {self.options.train_split!r})",
        )

    def write_weights(self, epoch: int, metrics: dict[str, object], improved: bool) -> None:
        card = self.card(epoch, metrics)
        save_weights(self.model, card, self.out / "last.safetensors", half=self.options.half, overwrite=True)
        if improved:
            save_weights(self.model, card, self.out / "best.safetensors", half=self.options.half, overwrite=True)

    def save_checkpoint(self) -> None:
        if self.world.is_main:
            settings = {"options": {k: str(v) for k, v in asdict(self.options).items()}, "recipe": asdict(self.recipe)}
            save_checkpoint(self.out, self.model, self.optimizer, self.state, settings, self.scaler)
        if self.world.distributed:
            torch.distributed.barrier()
