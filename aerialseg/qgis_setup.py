"""aerialseg's QGIS plugin into a QGIS user profile (enabled, pointing at this environment), out of it, or into a zip.

The plugin (:mod:`aerialseg.qgis_plugin`) runs in QGIS's own Python and calls the ``aerialseg``
command line as a subprocess, so it must know which one: :func:`install_plugin` records the
executable of the environment it runs in (``aerialseg.json`` beside the plugin's modules) and
enables the plugin in the profile's ``QGIS/QGIS3.ini``, so that the next QGIS start, desktop or
``qgis_process``, offers the algorithms with no other step. :func:`package_plugin` writes the
zip that QGIS's "Install from ZIP" takes, without an executable (the provider's setting or
PATH then names it). Both write ``metadata.txt`` from this package's version.

Profiles live in ``$XDG_DATA_HOME/QGIS/QGIS3/profiles`` (default ``~/.local/share``) on Linux,
``%APPDATA%/QGIS/QGIS3/profiles`` on Windows and ``~/Library/Application Support/QGIS/QGIS3/profiles``
on macOS. The settings file is edited line by line (Qt's INI dialect is not Python's), and
written through a temporary file.
"""

from __future__ import annotations

import os
import shutil
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .atomic import atomic_output, check_output
from .errors import AerialsegError
from .qgis_plugin.config import PLUGIN_FOLDER, PluginConfig

__all__ = [
    "DEFAULT_PROFILE",
    "PLUGIN_FOLDER",
    "InstalledPlugin",
    "profiles_folder",
    "running_command",
    "install_plugin",
    "uninstall_plugin",
    "package_plugin",
]

DEFAULT_PROFILE = "default"
"""The profile QGIS creates and starts with."""

QGIS_MINIMUM_VERSION = "3.22"
"""The oldest QGIS the plugin is tested with (Debian 12's)."""

_SOURCE = Path(__file__).resolve().parent / "qgis_plugin"
_SOURCE_FILES = ("__init__.py", "plugin.py", "provider.py", "algorithms.py", "process.py", "config.py", "icon.svg")
_SETTINGS = Path("QGIS") / "QGIS3.ini"
_SECTION = "[PythonPlugins]"


@dataclass(frozen=True)
class InstalledPlugin:
    """Where the plugin went, the settings file that enables it, and the command it runs."""

    profile: str
    folder: Path
    settings: Path
    command: list[str] | None


def profiles_folder() -> Path:
    """QGIS 3's profiles folder on this system (see the module docstring)."""
    if sys.platform == "win32":
        base = Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "QGIS" / "QGIS3" / "profiles"


def running_command() -> list[str]:
    """The absolute command that runs this aerialseg: its console script, else ``python -m aerialseg``.

    The environment's own paths are kept as they are (a virtual environment's ``python`` is
    a link that must not be resolved out of it).
    """
    launched = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    script = "aerialseg.exe" if sys.platform == "win32" else "aerialseg"
    for candidate in (launched, Path(sys.executable).parent / script):
        if candidate is not None and candidate.name == script and candidate.is_file():
            return [str(candidate.absolute())]
    return [str(Path(sys.executable).absolute()), "-m", "aerialseg"]


def install_plugin(profile: str = DEFAULT_PROFILE, command: list[str] | None = None) -> InstalledPlugin:
    """Copy the plugin into ``profile`` (replacing an older copy), record ``command``, enable it.

    ``command`` defaults to :func:`running_command`. The ``default`` profile is created if
    QGIS never ran; another profile must exist (a misspelt name would install where QGIS
    never looks).
    """
    command = command or running_command()
    folder = _profile(profile)
    plugins = folder / "python" / "plugins"
    target, staging, old = (
        plugins / name for name in (PLUGIN_FOLDER, f".{PLUGIN_FOLDER}.new", f".{PLUGIN_FOLDER}.old")
    )
    try:
        plugins.mkdir(parents=True, exist_ok=True)
        for leftover in (staging, old):
            shutil.rmtree(leftover, ignore_errors=True)
        _write_plugin(staging, PluginConfig(__version__, _choices(), command))
        if target.exists():
            os.replace(target, old)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
        settings = folder / _SETTINGS
        _set_enabled(settings, True)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise AerialsegError(
            f"{exc.filename or plugins}: cannot install the QGIS plugin ({exc.strerror or exc})",
            hint="free space or fix the folder's permissions, then run 'aerialseg qgis install' again",
        ) from exc
    return InstalledPlugin(profile, target, settings, command)


def uninstall_plugin(profile: str = DEFAULT_PROFILE) -> InstalledPlugin | None:
    """Remove the plugin from ``profile`` and its line from the settings; None if it was not there."""
    folder = _profile(profile, create=False)
    target, settings = folder / "python" / "plugins" / PLUGIN_FOLDER, folder / _SETTINGS
    if not target.exists() and not _enabled_line(settings):
        return None
    try:
        if target.exists():
            shutil.rmtree(target)
        _set_enabled(settings, False)
    except OSError as exc:
        raise AerialsegError(
            f"{exc.filename or target}: cannot remove the QGIS plugin ({exc.strerror or exc})",
            hint="close QGIS and fix the folder's permissions, then run 'aerialseg qgis uninstall' again",
        ) from exc
    return InstalledPlugin(profile, target, settings, None)


def package_plugin(destination: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """The plugin as a zip for QGIS's "Install from ZIP": one ``aerialseg_processing/`` folder, no executable."""
    if Path(destination).suffix.lower() != ".zip":
        raise AerialsegError(f"{destination}: QGIS installs plugins from .zip files", hint="end the name in .zip")
    path = check_output(destination, overwrite)
    config = PluginConfig(__version__, _choices(), None)
    with atomic_output(path, overwrite) as temporary, zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in _plugin_files(config):
            archive.writestr(f"{PLUGIN_FOLDER}/{name}", data)
    return path


def _profile(profile: str, create: bool = True) -> Path:
    """The profile's folder; refused: a name that is no plain folder name, a missing profile but the default."""
    if not profile or profile in (".", "..") or any(c in profile for c in "/\\:") or profile != profile.strip():
        raise AerialsegError(f"--profile {profile!r} is no QGIS profile name", hint="give the name QGIS shows")
    root = profiles_folder()
    folder = root / profile
    if folder.is_dir() or (create and profile == DEFAULT_PROFILE):
        return folder
    present = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    raise AerialsegError(
        f"no QGIS profile {profile!r} in {root}",
        hint=f"name one of {', '.join(present)}" if present else "start QGIS once, or use the default profile",
    )


def _choices() -> dict[str, list[str]]:
    """The command line's choices the algorithms offer, from aerialseg's own tables."""
    from .runners.choice import BACKENDS, PRECISIONS, TTA_MODES

    return {"backend": list(BACKENDS), "precision": list(PRECISIONS), "tta": list(TTA_MODES)}


def _metadata() -> str:
    """``metadata.txt``: what QGIS's plugin manager reads; ``hasProcessingProvider`` makes qgis_process load it."""
    fields = {
        "name": "aerialseg",
        "qgisMinimumVersion": QGIS_MINIMUM_VERSION,
        "description": "Land-cover maps and object polygons from aerial orthophotos (MANet, MAResU-Net, ABCNet)",
        "about": "Processing algorithms that run the aerialseg command line of the environment that installed "
        "them: predict (class raster, objects), vectorize and doctor, with progress and Cancel.",
        "version": __version__,
        "author": "aerialseg developers",
        "tags": "segmentation,land cover,orthophoto,deep learning,processing",
        "category": "Analysis",
        "icon": "icon.svg",
        "hasProcessingProvider": "yes",
        "experimental": "False",
    }
    return "[general]\n" + "".join(f"{key}={value}\n" for key, value in fields.items())


def _plugin_files(config: PluginConfig) -> list[tuple[str, bytes]]:
    """Every file of the plugin: its modules and icon, ``metadata.txt`` and ``aerialseg.json``."""
    from .qgis_plugin.config import CONFIG_FILE

    files = [(name, (_SOURCE / name).read_bytes()) for name in _SOURCE_FILES]
    return [*files, ("metadata.txt", _metadata().encode()), (CONFIG_FILE, config.to_json().encode())]


def _write_plugin(folder: Path, config: PluginConfig) -> None:
    """The plugin's files into ``folder`` (made here)."""
    folder.mkdir()
    for name, data in _plugin_files(config):
        (folder / name).write_bytes(data)


def _enabled_line(settings: Path) -> bool:
    """Whether the settings file has the plugin's line in ``[PythonPlugins]``."""
    lines = settings.read_text(encoding="utf-8").splitlines() if settings.is_file() else []
    return _find(lines)[1] is not None


def _find(lines: list[str]) -> tuple[int | None, int | None]:
    """Indices of the ``[PythonPlugins]`` header and of the plugin's line in that section (None where absent)."""
    header = next((i for i, line in enumerate(lines) if line.strip() == _SECTION), None)
    if header is None:
        return None, None
    for i in range(header + 1, len(lines)):
        if lines[i].startswith("["):
            break
        if lines[i].split("=", 1)[0].strip() == PLUGIN_FOLDER:
            return header, i
    return header, None


def _set_enabled(settings: Path, enabled: bool) -> None:
    """Set (or, not ``enabled``, remove) ``aerialseg_processing=true`` in ``[PythonPlugins]``; other lines kept."""
    lines = settings.read_text(encoding="utf-8").splitlines() if settings.is_file() else []
    header, line = _find(lines)
    entry = f"{PLUGIN_FOLDER}=true"
    if line is not None:
        lines[line : line + 1] = [entry] if enabled else []
    elif enabled and header is not None:
        lines.insert(header + 1, entry)
    elif enabled:
        lines = [*lines, *([""] if lines and lines[-1].strip() else []), _SECTION, entry]
    else:
        return
    settings.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(settings, overwrite=True) as temporary:
        Path(temporary).write_text("\n".join(lines) + "\n", encoding="utf-8")
