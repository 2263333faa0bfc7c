"""``aerialseg qgis``: the Processing provider into a QGIS profile, out of it, or into a zip."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from . import console
from .options import JsonOutput, Overwrite

qgis_app = typer.Typer(
    help="A QGIS Processing provider (predict, vectorize, doctor) that runs this aerialseg.",
    rich_markup_mode=None,
)

Profile = Annotated[str, typer.Option("--profile", help="QGIS user profile (QGIS creates 'default').")]


@qgis_app.command("install")
def install_command(profile: Profile = "default", json_output: JsonOutput = False) -> None:
    """Copy the plugin into the profile, pointing at this aerialseg, and enable it for the next QGIS start."""
    from ..qgis_setup import install_plugin

    installed = install_plugin(profile)
    if json_output:
        console.print_json(installed.__dict__)
        return
    command = " ".join(installed.command or [])
    console.out.print(
        f"installed the aerialseg provider in QGIS profile {profile!r}: {installed.folder}", soft_wrap=True
    )
    console.info(
        f"it runs {command}; start QGIS (or qgis_process) and find it under aerialseg in the Processing toolbox"
    )


@qgis_app.command("uninstall")
def uninstall_command(profile: Profile = "default") -> None:
    """Remove the plugin from the profile and disable it."""
    from ..qgis_setup import uninstall_plugin

    removed = uninstall_plugin(profile)
    if removed is None:
        console.info(f"the aerialseg provider is not installed in QGIS profile {profile!r}: nothing to remove")
    else:
        console.out.print(f"removed the aerialseg provider from QGIS profile {profile!r}", soft_wrap=True)


@qgis_app.command("package")
def package_command(
    output: Annotated[
        Path, typer.Option("-o", "--output", help="The zip to write (QGIS: Plugins > Install from ZIP).")
    ],
    overwrite: Overwrite = False,
) -> None:
    """A zip of the plugin for QGIS's Install from ZIP; set the aerialseg executable in the provider's settings."""
    from ..qgis_setup import package_plugin

    path = package_plugin(output, overwrite)
    console.out.print(f"wrote {path}", soft_wrap=True)
    console.info(
        "after Install from ZIP, name the aerialseg executable in Processing > Options > Providers > aerialseg "
        "(or have aerialseg on PATH)"
    )
