"""Run folders and installed weights of ``train`` without ``--out``.

A run goes to ``<data folder>/runs/<dataset>-<arch>-<backbone>-<YYYYMMDD-HHMMSS>``
(:func:`aerialseg.data.store.data_home`); ``--resume`` without ``--out`` continues the newest
such folder of the same dataset and network. When the run ends, its best weights (else its
last) are copied into the user weights folder as ``<arch>-<r18|r34|r50>-<dataset>-<time>``, a
name that says what they are, so ``aerialseg predict ortho.tif --model manet`` finds them and,
by their validation score, prefers them to sample weights and to weaker runs. A resumed run
replaces its own earlier install (same name), never another run's.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

from ..atomic import atomic_output, make_folder
from ..data.store import data_home
from ..errors import TrainingError
from ..weights import SUFFIX, installed_name, user_weights_dir

__all__ = ["runs_folder", "new_run_folder", "latest_run", "install_weights"]

_STAMP = re.compile(r"-(\d{8}-\d{6})(?:-\d+)?$")


def runs_folder() -> Path:
    """Where training runs go when ``--out`` is not given."""
    return data_home() / "runs"


def _prefix(dataset: str, arch: str, backbone: str) -> str:
    return f"{dataset.lower()}-{arch}-{backbone}-"


def new_run_folder(dataset: str, arch: str, backbone: str) -> Path:
    """A run folder name not yet taken: ``runs/<dataset>-<arch>-<backbone>-<YYYYMMDD-HHMMSS>`` (not created)."""
    base = runs_folder() / (_prefix(dataset, arch, backbone) + time.strftime("%Y%m%d-%H%M%S"))
    folder, extra = base, 1
    while folder.exists():  # two runs started within the same second
        extra += 1
        folder = base.with_name(f"{base.name}-{extra}")
    return folder


def latest_run(dataset: str, arch: str, backbone: str, checkpoint_name: str) -> Path:
    """The newest run folder of this dataset and network holding ``checkpoint_name``, for ``--resume``."""
    prefix = _prefix(dataset, arch, backbone)
    try:
        runs = [path for path in runs_folder().iterdir() if path.name.startswith(prefix)]
    except OSError:
        runs = []
    resumable = [path for path in runs if (path / checkpoint_name).is_file()]
    if not resumable:
        raise TrainingError(
            f"no run of {arch}-{backbone} on {dataset} to resume",
            path=runs_folder(),
            hint="start without --resume, or name the run folder with --out",
        )
    return max(resumable, key=lambda path: path.name)


def install_weights(weights: Path, run: Path, arch: str, backbone: str, dataset: str) -> Path:
    """Copy a run's weights into the user weights folder under a name that says what they are."""
    match = _STAMP.search(run.name)
    stamp = match.group(1) if match else time.strftime("%Y%m%d-%H%M%S")
    name = installed_name(arch, backbone, dataset, stamp)
    folder = make_folder(user_weights_dir(), "the weights folder", hint=f"the run's weights stay in {run}")
    target = folder / f"{name}{SUFFIX}"
    with atomic_output(target, overwrite=True) as tmp:  # the same run's earlier install (before a --resume)
        shutil.copyfile(weights, tmp)
    return target
