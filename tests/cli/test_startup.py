"""The command line starts at once: help and version load none of the heavy libraries.

The commands run one after another in one fresh interpreter (this test process has imported
everything long ago), which reports after each the heavy modules ``sys.modules`` holds: a
module that appears is charged to the first command after which it does.
"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("numpy", "rasterio", "torch", "onnx", "onnxruntime", "shapely", "pandas", "geopandas", "rich.markdown")
HEAVY += ("urllib3",)
"""What the start must not import: the array and raster stack, the networks, rich's Markdown parser, the HTTP client."""

COMMANDS = ["predict", "vectorize", "doctor", "models", "export", "prepare", "train", "eval", "weights import"]
ARGVS = [
    ["--help"],
    ["--version"],
    [],
    *([*command.split(), "--help"] for command in COMMANDS),
    ["weights", "info", "--help"],
    ["weights", "pull", "--help"],
    *(["qgis", command, "--help"] for command in ("install", "uninstall", "package")),
]

PROBE = f"""
import contextlib, io, json, sys
from aerialseg.cli.main import main
for argv in json.loads(sys.argv[1]):
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        try:
            main(argv)
        except SystemExit as exc:
            code = exc.code
    heavy = [m for m in {HEAVY!r} if m in sys.modules]
    print(json.dumps({{"argv": argv, "code": code, "printed": bool(printed.getvalue().strip()), "heavy": heavy}}))
"""


def test_help_and_version_import_nothing_heavy():
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(ARGVS)], capture_output=True, text=True, timeout=120, check=True
    )
    reports = [json.loads(line) for line in done.stdout.splitlines()]
    assert [report["argv"] for report in reports] == ARGVS
    for report in reports:
        assert report["heavy"] == [], report
        assert report["code"] in (0, 2, None) and report["printed"], report  # bare: its help, exit 2
