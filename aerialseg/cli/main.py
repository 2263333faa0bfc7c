"""Entry point: the Typer app, global options, and the mapping of errors to exit codes.

Exit codes: 0 success; 1 a command failed (an :class:`AerialsegError`, printed as one
line); 2 usage error (one line too, naming the command's ``--help``); 130 interrupted.
Anything else is a bug and keeps its traceback.

The command line starts at once: the command modules import only typer and the library's
import-light modules of choices and defaults (``--help`` and ``--version`` load neither numpy,
rasterio, torch nor rich; tests/cli/test_startup.py checks it); each command imports the API
inside its body. Help is click's plain text (rich's help renderer would load its Markdown
parser on every start).
"""

from __future__ import annotations

import logging
import sys
import warnings
from typing import Annotated, Protocol, TextIO, runtime_checkable

import typer

from .. import __version__
from ..errors import AerialsegError, AerialsegWarning, first_line
from . import console
from .doctor import doctor_command
from .evaluate import evaluate_command
from .export import export_command
from .models import models_command
from .predict import predict_command
from .prepare import prepare_command
from .qgis import qgis_app
from .train import train_command
from .vectorize import vectorize_command
from .weights import weights_app

app = typer.Typer(
    name="aerialseg",
    help="Land-cover maps and object polygons from aerial orthophotos (MANet, MAResU-Net, ABCNet).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    rich_markup_mode=None,
    context_settings={"max_content_width": 100},  # as wide as the terminal, up to 100 columns
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"aerialseg {__version__}")
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
    logging.getLogger().setLevel(level)  # also where logging was set up before (a host program, a test)


app.command("predict", short_help="Orthophotos in, class rasters (and polygons) out; many files per call.")(
    predict_command
)
app.command("vectorize", short_help="Class rasters in, a polygon layer per class out.")(vectorize_command)
app.command("doctor", short_help="Check a raster against a model before a long run.")(doctor_command)
app.command("models", short_help="The networks, the weights installed and the datasets prepared.")(models_command)
app.command("export", short_help="Weights to ONNX, written only if ONNX Runtime agrees with PyTorch.")(export_command)
app.command("prepare", short_help="Benchmark archives or your own images into a training dataset.")(prepare_command)
app.command("train", short_help="Train MANet, MAResU-Net or ABCNet with the papers' recipe.")(train_command)
app.command("eval", short_help="The papers' scores of a model on a prepared dataset.")(evaluate_command)
app.add_typer(weights_app, name="weights")
app.add_typer(qgis_app, name="qgis")


def main(argv: list[str] | None = None) -> None:
    """Run the command line and exit with its code; Python warnings print as ``warning:`` lines."""
    try:
        with warnings.catch_warnings():
            warnings.showwarning = show_warning
            code = app(args=argv, prog_name="aerialseg", standalone_mode=False)
    except AerialsegError as exc:
        console.error(str(exc))
        sys.exit(1)
    except (KeyboardInterrupt, typer.Abort):
        console.error("interrupted")
        sys.exit(130)
    except Exception as exc:
        if not isinstance(exc, UsageProblem):  # a defect or a library's unworded error: one line, traceback at -v
            logging.getLogger("aerialseg").info("the unexpected error", exc_info=exc)
            detail = f"{type(exc).__name__}: {first_line(exc)}" if str(exc) else type(exc).__name__
            console.error(f"unexpected error ({detail}); rerun with -v for the traceback, and report it")
            sys.exit(1)
        if type(exc).__name__ == "NoArgsIsHelpError":  # a group called bare: its help, on stdout as --help prints it
            typer.echo(exc.ctx.get_help())  # type: ignore[attr-defined]
        else:
            console.error(usage_line(exc))
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


def show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """A warning as one ``warning:`` line, as :func:`warnings.showwarning` is called.

    aerialseg's own warnings (:class:`~aerialseg.errors.AerialsegWarning`) say what happened and
    the fix; a library's (numpy's overflow, rasterio's) is named by its category. The source
    file and line that Python would print concern aerialseg's code, not the user's data.
    """
    text = " ".join(str(message).split())
    console.warning(text if issubclass(category, AerialsegWarning) else f"{text} ({category.__name__})")


@runtime_checkable
class UsageProblem(Protocol):
    """A usage error of the click that typer uses (its own vendored copy in recent versions).

    Recognised by its interface rather than by one module's class.
    """

    exit_code: int

    def format_message(self) -> str:
        """Click's message."""
        ...

    def show(self) -> None:
        """Click's own rendering (usage, hint, message) on stderr."""
        ...


def usage_line(exc: UsageProblem) -> str:
    """A usage error as one line: click's message and where the command's help is."""
    message = " ".join(exc.format_message().split())
    context = getattr(exc, "ctx", None)
    return f"{message} (see '{context.command_path} --help')" if context is not None else message
