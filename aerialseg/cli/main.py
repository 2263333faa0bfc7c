"""Entry point: the Typer app, global options, and the mapping of errors to exit codes.

Exit codes: 0 success; 1 a command failed (an :class:`AerialsegError`, printed as one
line); 2 usage error; 130 interrupted. Anything else is a bug and keeps its traceback.
Commands import the API inside their bodies, so ``--help`` never loads torch.
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from .. import __version__
from ..errors import AerialsegError
from . import console
from .doctor import doctor_command
from .evaluate import evaluate_command
from .export import export_command
from .models import models_command
from .predict import predict_command
from .prepare import prepare_command
from .train import train_command
from .vectorize import vectorize_command
from .weights import weights_app

app = typer.Typer(
    name="aerialseg",
    help="Land-cover maps and object polygons from aerial orthophotos (MANet, MAResU-Net, ABCNet).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        console.out.print(f"aerialseg {__version__}")
        raise typer.Exit()


@app.callback()
def callback(
    verbose: Annotated[int, typer.Option("-v", "--verbose", count=True, help="More log output (-vv: debug).")] = 0,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Only errors.")] = False,
    version: Annotated[
        bool | None, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = None,
) -> None:
    """Land-cover maps and object polygons from aerial orthophotos."""
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


app.command("predict")(predict_command)
app.command("vectorize")(vectorize_command)
app.command("doctor")(doctor_command)
app.command("models")(models_command)
app.command("export")(export_command)
app.command("prepare")(prepare_command)
app.command("train")(train_command)
app.command("eval")(evaluate_command)
app.add_typer(weights_app, name="weights")


def main(argv: list[str] | None = None) -> None:
    """Run the command line and exit with its code."""
    try:
        code = app(args=argv, prog_name="aerialseg", standalone_mode=False)
    except AerialsegError as exc:
        console.error(str(exc))
        sys.exit(1)
    except (KeyboardInterrupt, typer.Abort):
        console.error("interrupted")
        sys.exit(130)
    except Exception as exc:
        # Usage errors come from the click that typer uses (its own vendored copy in recent
        # versions): recognise them by their interface rather than by one module's class.
        if hasattr(exc, "show") and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()
            sys.exit(exc.exit_code)
        raise
    sys.exit(code if isinstance(code, int) else 0)
