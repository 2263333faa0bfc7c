"""What both benchmarks share: run one measurement in a fresh Python process and read its result.

A fresh process per row keeps each row's peak memory its own. The child reports ``VmHWM``,
which restarts at exec; ``ru_maxrss`` would also count the parent's memory at fork time.
"""

from __future__ import annotations

import json
import subprocess
import sys

PEAK_RSS = """
def peak_rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
"""


def run_child(code: str, *args: object, label: str) -> dict:
    """Run ``code`` (which may call ``peak_rss_mb()``) with ``args``; its last stdout line is JSON."""
    done = subprocess.run([sys.executable, "-c", PEAK_RSS + code, *map(str, args)], capture_output=True, text=True)
    if done.returncode:
        print(done.stderr[-2000:], file=sys.stderr)
        raise SystemExit(f"{label} failed")
    return json.loads(done.stdout.strip().splitlines()[-1])
