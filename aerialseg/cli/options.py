"""Options shared by several commands, defined once.

Used by: ``Overwrite`` (export, weights import), ``JsonOutput`` (models, weights info,
export), ``TrustPickle`` (weights import).
"""

from __future__ import annotations

from typing import Annotated

import typer

Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output file.")]
JsonOutput = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]
TrustPickle = Annotated[
    bool,
    typer.Option(
        "--trust-pickle",
        help="Allow unpickling arbitrary Python objects (runs code from the file). Only for files you trust.",
    ),
]
