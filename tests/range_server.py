"""A local HTTP server that answers Range requests and counts the bytes it sends: remote rasters without the internet.

A pytest plugin (conftest's ``pytest_plugins``): tests take the ``range_server`` fixture. Python's
``http.server`` ignores ``Range`` headers, so every read of a remote raster would fetch the whole
file; this handler serves one byte range, or several as ``multipart/byteranges`` (GDAL may ask
for them), answers HEAD, 404s a missing file, and records every response so tests can say how
much of a file a run fetched. Each test gets its own server and URL prefix: GDAL caches what it
learnt about a URL (size, existence, blocks) for the whole process.
"""

from __future__ import annotations

import re
import shutil
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Served:
    """One response: the request's method, path and Range header, the status and the body bytes sent."""

    method: str
    path: str
    range: str | None
    status: int
    sent: int


@dataclass
class RangeServer:
    """Files under ``root`` at ``url`` (``url + name``); ``log`` lists every response."""

    root: Path
    url: str
    log: list[Served] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, source: Path, name: str | None = None) -> str:
        """Copy ``source`` into the served folder; its URL."""
        shutil.copyfile(source, self.root / (name or source.name))
        return self.url + (name or source.name)

    def bytes_sent(self, name: str | None = None) -> int:
        """Body bytes sent so far (for the file ``name`` only, when given)."""
        with self.lock:
            return sum(s.sent for s in self.log if name is None or s.path.split("?")[0].endswith("/" + name))

    def reset(self) -> None:
        """Forget the responses so far."""
        with self.lock:
            self.log.clear()


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
        pass  # quiet test output

    def do_HEAD(self) -> None:  # noqa: N802 (http.server's naming)
        self._answer(body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._answer(body=True)

    def _answer(self, body: bool) -> None:
        state = self.server.state
        prefix = "/" + state.url.split("/", 3)[3]
        path = self.path.split("?", 1)[0]
        file = state.root / path[len(prefix) :] if path.startswith(prefix) else None
        header = self.headers.get("Range")
        if file is None or not file.is_file():
            self._send(404, {"Content-Length": "0"}, b"", body, header)
            return
        data = file.read_bytes()
        ranges = _ranges(header, len(data)) if header else None
        if not ranges:
            self._send(200, {"Content-Length": str(len(data)), "Accept-Ranges": "bytes"}, data, body, header)
        elif len(ranges) == 1:
            (start, stop), size = ranges[0], len(data)
            headers = {"Content-Range": f"bytes {start}-{stop}/{size}", "Content-Length": str(stop - start + 1)}
            self._send(206, headers, data[start : stop + 1], body, header)
        else:
            boundary = uuid.uuid4().hex
            parts = b"".join(
                f"--{boundary}\r\nContent-Type: application/octet-stream\r\n"
                f"Content-Range: bytes {start}-{stop}/{len(data)}\r\n\r\n".encode()
                + data[start : stop + 1]
                + b"\r\n"
                for start, stop in ranges
            )
            parts += f"--{boundary}--\r\n".encode()
            headers = {"Content-Type": f"multipart/byteranges; boundary={boundary}", "Content-Length": str(len(parts))}
            self._send(206, headers, parts, body, header)

    def _send(self, status: int, headers: dict[str, str], data: bytes, body: bool, header: str | None) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if body:
            self.wfile.write(data)
        state = self.server.state
        with state.lock:
            state.log.append(Served(self.command, self.path, header, status, len(data) if body else 0))


def _ranges(header: str, size: int) -> list[tuple[int, int]]:
    """``bytes=a-b,c-`` as inclusive ``(start, stop)`` pairs within ``size``."""
    found = []
    for start, stop in re.findall(r"(\d+)-(\d*)", header):
        first = int(start)
        if first < size:
            found.append((first, min(int(stop) if stop else size - 1, size - 1)))
    return found


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: RangeServer


@pytest.fixture
def range_server(tmp_path) -> Iterator[RangeServer]:
    """A server on 127.0.0.1 (ephemeral port, in a thread) for the files of ``tmp_path / "served"``."""
    root = tmp_path / "served"
    root.mkdir()
    server = _Server(("127.0.0.1", 0), _Handler)
    host, port = server.server_address[:2]
    server.state = RangeServer(root, f"http://{host}:{port}/{uuid.uuid4().hex[:8]}/")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
