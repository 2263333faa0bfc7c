"""Training on the CPU: wall and system time of N steps, with glibc's defaults and with aerialseg's thresholds.

Run by hand, not by CI:
    python benchmarks/train_cpu.py --steps 40 --batch-size 4 --crop 256

The sample patch's miniature Potsdam archive (examples/train_sample_weights.py) is prepared
once; then each row trains MANet-R18 from scratch for ``--steps`` optimizer steps in a fresh
process, alternating the two allocator settings for ``--rounds`` rounds. "glibc defaults"
skips aerialseg's ``keep_freed_memory`` (as before it existed); "kept" is what ``train`` does.
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
from pathlib import Path

from _child import run_child
from _data import DATA, ROOT

CHILD = r"""
import json, resource, sys, time
import aerialseg.allocator
from aerialseg.training.loop import TrainOptions, train
data, out, steps, batch, crop, mode = sys.argv[1:7]
if mode == "defaults":
    aerialseg.allocator._applied = True  # pretend the thresholds are set: glibc keeps its own tuning
usage, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
train(TrainOptions(data=data, out=out, arch="manet", backbone="resnet18", batch_size=int(batch), crop=int(crop),
                   max_steps=int(steps), overwrite=True, val_split=None, epochs=1000))
end = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps(dict(wall=time.perf_counter() - start, user=end.ru_utime - usage.ru_utime,
                      sys=end.ru_stime - usage.ru_stime, rss_mb=peak_rss_mb())))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "aerialseg-bench")
    args = parser.parse_args()
    data = args.workdir / "potsdam-sample"
    if not (data / "manifest.json").exists():
        from aerialseg.data.prepare import prepare_dataset

        spec = importlib.util.spec_from_file_location("sample", ROOT / "examples" / "train_sample_weights.py")
        script = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(script)
        raw = args.workdir / "potsdam-sample-raw"
        if not raw.exists():
            script.write_archive(DATA.parent, raw)
        prepare_dataset("potsdam", raw, data, patch_size=256, stride=64, overwrite=True)
    rows = []
    for round_ in range(1, args.rounds + 1):
        for mode in ("defaults", "kept"):
            r = run_child(
                CHILD, data, args.workdir / "train-run", args.steps, args.batch_size, args.crop, mode, label=mode
            )
            rows.append((round_, mode, r))
    print(f"\nMANet-R18 from scratch, {args.steps} steps of batch {args.batch_size}, crop {args.crop}, CPU")
    print(f"{'round':>5} {'allocator':<15} {'wall s':>7} {'user s':>7} {'sys s':>6} {'sys %':>6} {'peak RSS MB':>11}")
    for round_, mode, r in rows:
        label = "glibc defaults" if mode == "defaults" else "kept (aerialseg)"
        print(
            f"{round_:>5} {label:<15} {r['wall']:>7.1f} {r['user']:>7.1f} {r['sys']:>6.1f} "
            f"{100 * r['sys'] / r['wall']:>6.1f} {r['rss_mb']:>11.0f}"
        )


if __name__ == "__main__":
    main()
