"""What ``aerialseg qgis install`` tells the plugin: which aerialseg to run, and the command line's choices.

Written as ``aerialseg.json`` in the installed plugin's folder (by :mod:`aerialseg.qgis_setup`)
and read by the provider; QGIS-free, so both sides and the tests share it. The choices (engines,
precisions, augmentations) come from aerialseg's own tables when the file is written, so the
algorithms offer exactly what the command line accepts.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

CONFIG_FILE = "aerialseg.json"
"""The file beside the plugin's modules."""

EXECUTABLE_SETTING = "AERIALSEG_EXECUTABLE"
"""The provider's setting (Processing > Options > Providers > aerialseg): the executable to run."""

PLUGIN_FOLDER = "aerialseg_processing"
"""The plugin's folder (and module) name in a QGIS profile; the provider's id is ``aerialseg``."""


class SetupProblem(Exception):
    """No aerialseg to run: the message says how to name one."""


@dataclass(frozen=True)
class PluginConfig:
    """``command``: the argv prefix that runs aerialseg (None in a zip package: the setting or PATH decides)."""

    version: str
    choices: dict = field(default_factory=dict)
    command: list | None = None

    def to_json(self) -> str:
        """The file's text."""
        return json.dumps({"version": self.version, "command": self.command, "choices": self.choices}, indent=2)

    @classmethod
    def read(cls, folder: str | os.PathLike) -> PluginConfig:
        """The file in ``folder``; a missing or damaged one gives a config without command or choices."""
        try:
            data = json.loads((Path(folder) / CONFIG_FILE).read_text(encoding="utf-8"))
            return cls(str(data["version"]), dict(data.get("choices") or {}), data.get("command"))
        except (OSError, ValueError, KeyError, TypeError):
            return cls("unknown")


def aerialseg_command(setting: str | None, config: PluginConfig) -> list:
    """The argv prefix to run: the provider's setting, else the recorded command, else ``aerialseg`` on PATH."""
    where = "Processing > Options > Providers > aerialseg"
    if setting:
        if not Path(setting).is_file():
            raise SetupProblem(f"the aerialseg executable set in {where} ({setting}) is no file; correct or clear it")
        return [setting]
    if config.command:
        if not Path(config.command[0]).is_file():
            raise SetupProblem(
                f"the aerialseg recorded at install ({config.command[0]}) is gone; run 'aerialseg qgis install' "
                f"again from the environment that has aerialseg, or set the executable in {where}"
            )
        return list(config.command)
    found = shutil.which("aerialseg")
    if found is None:
        raise SetupProblem(
            f"no aerialseg executable: run 'aerialseg qgis install' from the environment that has aerialseg, "
            f"or set the executable in {where}"
        )
    return [found]
