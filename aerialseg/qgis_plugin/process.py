"""The aerialseg command line as the subprocess of a Processing algorithm: progress, Cancel, one-line errors.

QGIS-free: it takes QGIS's feedback object as it comes (``isCanceled``, ``setProgress``,
``pushInfo``, ``pushWarning``), so the project's tests drive it with a stand-in. The command
runs with ``--progress json``: lines of stderr that are JSON objects with a ``stage`` become
the progress bar through the algorithm's ``percent`` function; ``error:`` lines become the
failure's message, ``warning:`` lines warnings, the rest the log. Cancel sends the process
group Ctrl-C (aerialseg deletes its temporary files and exits), then kills what is left
after :data:`STOP_GRACE_S`: workers included, nothing keeps running.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any, Optional

STOP_GRACE_S = 3.0
"""How long aerialseg has to clean up after Ctrl-C before the group is killed."""

POLL_S = 0.1
"""How often Cancel is looked at while aerialseg says nothing."""

FOREIGN_ENVIRONMENT = (
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "GDAL_DATA",
    "GDAL_DRIVER_PATH",
    "PROJ_LIB",
    "PROJ_DATA",
)
"""QGIS's settings for its own Python, GDAL and PROJ, which would misdirect aerialseg's (bundled) ones."""

_WINDOWS_GROUP = 0x00000200 | 0x08000000
"""CREATE_NEW_PROCESS_GROUP (so Ctrl-Break reaches the group) | CREATE_NO_WINDOW (no console pops up)."""

Percent = Callable[[dict], Optional[float]]


class CommandFailed(Exception):
    """aerialseg exited non-zero: the message is its ``error:`` line, ``output`` what it printed on stdout."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


class Canceled(Exception):
    """The user pressed Cancel; the process group is gone."""


def environment() -> dict:
    """The environment without QGIS's Python, GDAL and PROJ settings, output in UTF-8 without colours."""
    env = {key: value for key, value in os.environ.items() if key not in FOREIGN_ENVIRONMENT}
    env.update(PYTHONIOENCODING="utf-8", NO_COLOR="1")
    return env


def run(command: list, feedback: Any, percent: Percent) -> str:  # noqa: ANN401 (a QgsProcessingFeedback)
    """Run ``command`` to its end and return its stdout; raise :class:`CommandFailed` or :class:`Canceled`."""
    process = _start(command)
    feedback.pushInfo(f"aerialseg (pid {process.pid}): {subprocess.list2cmdline(command)}")
    lines: queue.Queue = queue.Queue()
    out: list = []
    readers = [
        threading.Thread(target=_lines, args=(process.stderr, lines), daemon=True),
        threading.Thread(target=_whole, args=(process.stdout, out), daemon=True),
    ]
    for reader in readers:
        reader.start()
    errors: list = []
    while True:
        if feedback.isCanceled():
            stop(process)
            _close(process, readers)
            raise Canceled("canceled; nothing was written")
        try:
            line = lines.get(timeout=POLL_S)
        except queue.Empty:
            continue
        if line is None:
            break
        _report(line, feedback, percent, errors)
    process.wait()
    _close(process, readers)
    if process.returncode != 0:
        message = errors[0] if errors else f"aerialseg exited with code {process.returncode}"
        raise CommandFailed(message, "".join(out))
    return "".join(out)


def _start(command: list) -> subprocess.Popen:
    """The process, in a process group of its own so that Cancel reaches its workers too."""
    windows = sys.platform == "win32"
    return subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment(),
        encoding="utf-8",
        errors="replace",
        start_new_session=not windows,
        creationflags=_WINDOWS_GROUP if windows else 0,
    )


def _close(process: subprocess.Popen, readers: list) -> None:
    """The pipes, once their readers are done (the group is gone, so they end at once)."""
    for reader in readers:
        reader.join(STOP_GRACE_S)
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()


def _whole(stream: Any, out: list) -> None:  # noqa: ANN401 (a text stream)
    """All of ``stream``, appended to ``out``."""
    out.append(stream.read())


def _lines(stream: Any, lines: queue.Queue) -> None:  # noqa: ANN401 (a text stream)
    """Every line of ``stream``, then None."""
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)


def _report(line: str, feedback: Any, percent: Percent, errors: list) -> None:  # noqa: ANN401
    """One line of aerialseg's stderr into the feedback."""
    if line.startswith("{"):
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        if isinstance(event, dict) and "stage" in event:
            share = percent(event)
            if share is not None:
                feedback.setProgress(max(0.0, min(100.0, share)))
            return
    if line.startswith("error: "):
        errors.append(line[len("error: ") :])
    elif line.startswith("warning: "):
        feedback.pushWarning(line[len("warning: ") :])
    elif line.strip():
        feedback.pushInfo(line)


def stop(process: subprocess.Popen) -> None:
    """Ctrl-C to the process group, then, after :data:`STOP_GRACE_S`, kill whatever of it is left."""
    _signal_group(process, interrupt=True)
    try:
        process.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        _signal_group(process, interrupt=False)
        process.wait()
    _signal_group(process, interrupt=False)  # workers that outlived their parent


def _signal_group(process: subprocess.Popen, interrupt: bool) -> None:
    """Ctrl-C (``interrupt``) or kill to the process's group; a group already gone is fine."""
    try:
        if sys.platform == "win32":
            if interrupt:
                process.send_signal(signal.CTRL_BREAK_EVENT)
            else:
                subprocess.run(["taskkill", "/F", "/T", "/PID", str(process.pid)], capture_output=True)
        else:
            os.killpg(process.pid, signal.SIGINT if interrupt else signal.SIGKILL)
    except OSError:  # ProcessLookupError: the group is gone
        pass


def share_of(stage: str) -> Percent:
    """The percent function of one counted ``stage`` (``tiles`` of a predict, ``rows`` of a vectorize)."""

    def percent(event: dict) -> Optional[float]:
        if event.get("stage") != stage or not event.get("total"):
            return None
        return 100.0 * float(event["done"]) / float(event["total"])

    return percent
