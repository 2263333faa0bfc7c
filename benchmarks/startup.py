"""Command-line start-up: median wall time of aerialseg's quickest commands against ``import typer``.

Each command runs ``--runs`` times, interleaved with the others so a busy moment of the machine
touches them all; bytecode is compiled first, as after an install. ``--before PATH`` also times
the checkout at PATH (its ``aerialseg`` package on ``PYTHONPATH``), in the same run.

    python benchmarks/startup.py
    python benchmarks/startup.py --before ../aerialseg-main
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

COMMANDS = (["--version"], ["--help"], ["predict", "--help"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--before", help="another checkout of aerialseg to time in the same run")
    args = parser.parse_args()
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    script = shutil.which("aerialseg") or "aerialseg"
    cases = {"python -c 'import typer'": ([sys.executable, "-c", "import typer"], env)}
    checkouts = [("now", env)] + ([("before", env | {"PYTHONPATH": args.before})] if args.before else [])
    for label, checkout_env in checkouts:
        for argv in COMMANDS:
            cases[f"{label}: aerialseg {' '.join(argv)}"] = ([script, *argv], checkout_env)
    for command, command_env in cases.values():  # compile the bytecode, warm the file cache
        subprocess.run(command, env=command_env, capture_output=True, check=True)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.runs):
        for name, (command, command_env) in cases.items():
            start = time.perf_counter()
            subprocess.run(command, env=command_env, capture_output=True, check=True)
            times[name].append(time.perf_counter() - start)
    baseline = statistics.median(times["python -c 'import typer'"])
    print(f"{'command':40s} {'median s':>9s} {'- typer s':>10s}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:40s} {median:9.3f} {median - baseline:10.3f}")


if __name__ == "__main__":
    main()
