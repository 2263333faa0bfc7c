"""``aerialseg weights pull``: downloads from a real HTTP server on 127.0.0.1, started by each test.

The server (stdlib ``http.server`` in a thread) answers ``Range`` with ``If-Range`` against its
ETag, redirects ``/resolve/`` links as the Hugging Face hub does to its CDN, and can cut a body
off after some bytes (an interrupted download) or answer an error status first (a retry).
The bodies are the shipped sample weights and a small ONNX graph carrying their card.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from aerialseg.card import read_card
from aerialseg.conventions import CARD_KEY
from aerialseg.download import pull_weights
from aerialseg.errors import DownloadError, WeightsError
from aerialseg.weights import resolve_weights, user_weights_dir


@dataclass(frozen=True)
class Seen:
    """One request as the server answered it."""

    path: str
    range: str | None
    if_range: str | None
    status: int


@dataclass
class ModelServer:
    """Bodies by path; ``cut_after`` drops the next body's connection after that many bytes."""

    base: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    etag_salt: str = ""
    cut_after: int | None = None
    fail_first: list[int] = field(default_factory=list)
    log: list[Seen] = field(default_factory=list)

    def serve(self, path: str, body: bytes, **headers: str) -> str:
        self.files[path] = body
        self.headers[path] = headers
        return self.base + path

    def etag(self, body: bytes) -> str:
        return '"' + hashlib.sha256(body + self.etag_salt.encode()).hexdigest()[:16] + '"'


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:  # noqa: N802
        state = self.server.state
        path = self.path.split("?", 1)[0]
        asked, if_range = self.headers.get("Range"), self.headers.get("If-Range")
        body = state.files.get(path)
        if state.fail_first:
            return self._send(state.fail_first.pop(0), {}, b"", asked, if_range)
        if path.startswith("/resolve/"):
            return self._send(302, {"Location": "/cdn/" + path.rsplit("/", 1)[1]}, b"", asked, if_range)
        if body is None:
            return self._send(404, {}, b"", asked, if_range)
        etag, start = state.etag(body), 0
        headers = {"ETag": etag, "Accept-Ranges": "bytes", **state.headers[path]}
        wanted = re.fullmatch(r"bytes=(\d+)-", asked or "")
        if wanted and if_range in (None, etag):
            start = int(wanted[1])
            if start >= len(body):
                return self._send(416, {"Content-Range": f"bytes */{len(body)}"}, b"", asked, if_range)
            headers["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
        self._send(206 if start else 200, headers, body[start:], asked, if_range)

    def _send(self, status: int, headers: dict[str, str], body: bytes, asked: str | None, if_range: str | None) -> None:
        state = self.server.state
        state.log.append(Seen(self.path, asked, if_range, status))
        self.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(key, value)
        self.end_headers()
        if state.cut_after is not None:  # an interrupted download: part of the body, then the connection closes
            body, state.cut_after = body[: state.cut_after], None
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: ModelServer

    def handle_error(self, request, client_address) -> None:
        pass  # a client that stops reading (a full disk) breaks the pipe: not the test's output


@pytest.fixture
def server():
    httpd = _Server(("127.0.0.1", 0), _Handler)
    host, port = httpd.server_address[:2]
    httpd.state = ModelServer(base=f"http://{host}:{port}")
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd.state
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=10)


@pytest.fixture
def weights_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv("AERIALSEG_WEIGHTS", raising=False)
    return user_weights_dir()


@pytest.fixture(scope="session")
def sample(repo_root) -> Path:
    return repo_root / "weights" / "manet-r18-potsdam-sample.safetensors"


@pytest.fixture(scope="session")
def sample_bytes(sample) -> bytes:
    return sample.read_bytes()


@pytest.fixture(scope="session")
def onnx_bytes(sample, tmp_path_factory) -> bytes:
    """A small ONNX graph (one Identity node) with the sample weights' card, as an export carries it."""
    import onnx
    from onnx import TensorProto, helper

    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 4, 4])
    output = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 4, 4])
    graph = helper.make_graph([helper.make_node("Identity", ["image"], ["output"])], "g", [image], [output])
    model = helper.make_model(graph)
    model.metadata_props.add(key=CARD_KEY, value=read_card(sample).to_json())
    path = tmp_path_factory.mktemp("onnx") / "m.onnx"
    onnx.save(model, str(path))
    return path.read_bytes()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_a_resolve_link_with_its_hash_installs_weights_found_by_name(cli, server, weights_dir, sample_bytes):
    url = server.serve("/cdn/buildings.safetensors", sample_bytes)
    link = url.replace("/cdn/", "/resolve/main/") + "?download=true"
    code, out, err = cli(["weights", "pull", link, "--sha256", _sha(sample_bytes).upper()])
    assert code == 0, err
    target = weights_dir / "buildings.safetensors"
    assert out.strip() == f"installed buildings ({target}); sha256 {_sha(sample_bytes)}"
    assert resolve_weights("buildings") == target and target.read_bytes() == sample_bytes
    assert _listing(weights_dir) == ["buildings.safetensors"]  # no partial file, no sidecar
    assert [seen.status for seen in server.log] == [302, 200]


def test_without_a_hash_the_sha256_is_printed_and_the_card_returned(server, weights_dir, sample, sample_bytes):
    pulled = pull_weights(server.serve("/m/sample.safetensors", sample_bytes), name="mine")
    assert pulled.name == "mine" and pulled.path == weights_dir / "mine.safetensors"
    assert pulled.sha256 == _sha(sample_bytes)
    assert pulled.card.arch == read_card(sample).arch and pulled.card.sha256  # the tensors' hash, verified


def test_an_exported_onnx_file_installs_by_name(cli, server, weights_dir, sample, onnx_bytes):
    url = server.serve("/m/roads.onnx", onnx_bytes)
    code, out, err = cli(["weights", "pull", url, "--json"])
    assert code == 0, err
    report = json.loads(out)
    assert report["name"] == "roads" and report["sha256"] == _sha(onnx_bytes)
    assert report["card"]["arch"] == read_card(sample).arch
    assert (
        resolve_weights("roads") == weights_dir / "roads.onnx"
        and (weights_dir / "roads.onnx").read_bytes() == onnx_bytes
    )


def test_a_deepness_contract_file_installs_and_runs_by_name(server, weights_dir, tmp_path):
    from deepness_models import build_model

    from aerialseg.runners import RunnerSpec

    contract = {"model_type": "Segmentor", "class_names": {"0": "background", "1": "road"}, "seg_thresh": 0.4}
    body = build_model(tmp_path / "roads.onnx", outputs=2, metadata=contract).read_bytes()
    pulled = pull_weights(server.serve("/m/road_segmentation.onnx", body), name="roads")
    assert pulled.card.origin == "deepness" and pulled.card.class_names == ["background", "road"]
    runner = RunnerSpec("roads").open()
    assert runner.card.threshold == 0.4 and runner.card.sha256 == _sha(body)


def test_the_server_may_name_the_file(server, weights_dir, onnx_bytes):
    url = server.serve("/get", onnx_bytes, **{"Content-Disposition": 'attachment; filename="../trees.onnx"'})
    pulled = pull_weights(url + "?id=7")
    assert pulled.path == weights_dir / "trees.onnx" and _listing(weights_dir) == ["trees.onnx"]


def test_a_wrong_hash_installs_nothing_and_names_both(cli, one_line, server, weights_dir, sample_bytes):
    url = server.serve("/m/buildings.safetensors", sample_bytes)
    code, _, err = cli(["weights", "pull", url, "--sha256", "0" * 64])
    one_line(code, err, 1, "0" * 64, _sha(sample_bytes), "nothing was installed")
    assert _listing(weights_dir) == []


def test_a_malformed_hash_is_refused_before_any_request(cli, one_line, server, weights_dir, sample_bytes):
    url = server.serve("/m/buildings.safetensors", sample_bytes)
    code, _, err = cli(["weights", "pull", url, "--sha256", "abc123"])
    one_line(code, err, 1, "'abc123' is not 64 hexadecimal digits")
    assert server.log == []


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("ftp://example.org/x.safetensors", "not an http or https URL"),
        ("{base}/m/x.bin", "names no .safetensors or .onnx file"),
        ("{base}/m/missing.safetensors", "HTTP 404"),
    ],
)
def test_refusals_are_one_line_and_install_nothing(cli, one_line, server, weights_dir, url, needle):
    server.serve("/m/x.bin", b"\0" * 100)
    code, _, err = cli(["weights", "pull", url.format(base=server.base)])
    one_line(code, err, 1, needle)
    assert _listing(weights_dir) == []


def test_an_unreachable_host_is_one_line(tmp_path, weights_dir):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = ["-m", "aerialseg", "weights", "pull", f"http://127.0.0.1:{port}/x.safetensors"]
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")}  # a process of its own: stderr as a user sees it
    done = subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"error: {argv[-1]}: cannot download (Connection refused); check the address and the network"
    ]
    assert _listing(weights_dir) == []


def test_server_errors_are_retried(server, weights_dir, onnx_bytes):
    server.fail_first = [503]
    pull_weights(server.serve("/m/roads.onnx", onnx_bytes))
    assert [seen.status for seen in server.log] == [503, 200]


def test_a_body_that_is_not_a_model_is_refused(cli, one_line, server, weights_dir):
    url = server.serve("/m/x.safetensors", os.urandom(5000))
    code, _, err = cli(["weights", "pull", url])
    one_line(code, err, 1, url, "not a safetensors file")
    url = server.serve("/m/y.onnx", os.urandom(5000))
    code, _, err = cli(["weights", "pull", url])
    one_line(code, err, 1, url, "ONNX")
    assert _listing(weights_dir) == []


def test_an_installed_name_needs_overwrite(cli, one_line, server, weights_dir, onnx_bytes, sample_bytes):
    url = server.serve("/m/roads.onnx", onnx_bytes)
    assert cli(["weights", "pull", url])[0] == 0
    server.log.clear()
    code, _, err = cli(["weights", "pull", url])
    one_line(code, err, 1, str(weights_dir / "roads.onnx"), "--overwrite")
    assert server.log == []  # refused before any request
    assert cli(["weights", "pull", url, "--overwrite"])[0] == 0
    code, _, err = cli(["weights", "pull", server.serve("/m/roads.safetensors", sample_bytes), "--overwrite"])
    one_line(code, err, 1, "'roads' are installed as .onnx", "another --name")  # --model roads would be ambiguous


@pytest.mark.parametrize("name", ["", "a/b", "x\x1b[31m"])
def test_a_name_that_is_no_file_name_is_refused(server, weights_dir, onnx_bytes, name):
    with pytest.raises(WeightsError, match="cannot name installed weights"):
        pull_weights(server.serve("/m/roads.onnx", onnx_bytes), name=name)
    assert server.log == []


def test_an_interrupted_download_resumes_where_it_stopped(cli, one_line, server, weights_dir, sample_bytes):
    url = server.serve("/m/buildings.safetensors", sample_bytes)
    server.cut_after = 5_000_000
    code, _, err = cli(["weights", "pull", url])
    part = weights_dir / "buildings.safetensors.part"
    kept = part.stat().st_size  # the whole chunks read before the connection dropped
    assert 1_000_000 < kept <= 5_000_000
    one_line(code, err, 1, f"connection dropped after {kept} of {len(sample_bytes)} bytes", "run the same command")
    assert not (weights_dir / "buildings.safetensors").exists()

    pulled = pull_weights(url, sha256=_sha(sample_bytes))
    resumed = server.log[-1]
    assert (resumed.range, resumed.if_range, resumed.status) == (f"bytes={kept}-", server.etag(sample_bytes), 206)
    assert pulled.path.read_bytes() == sample_bytes
    assert _listing(weights_dir) == ["buildings.safetensors"]


def test_a_file_changed_on_the_server_downloads_again(server, weights_dir, sample_bytes):
    url = server.serve("/m/buildings.safetensors", sample_bytes)
    server.cut_after = 5_000_000
    with pytest.raises(DownloadError, match="connection dropped"):
        pull_weights(url)
    kept = (weights_dir / "buildings.safetensors.part").stat().st_size
    server.etag_salt = "changed"
    pulled = pull_weights(url)
    assert (server.log[-1].range, server.log[-1].status) == (f"bytes={kept}-", 200)
    assert pulled.path.read_bytes() == sample_bytes


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_is_one_line_and_removes_the_partial(cli, one_line, server, weights_dir, sample_bytes):
    url = server.serve("/m/buildings.safetensors", sample_bytes)
    weights_dir.mkdir(parents=True)
    part = weights_dir / "buildings.safetensors.part"
    part.symlink_to("/dev/full")  # every write fails as on a full disk
    code, _, err = cli(["weights", "pull", url])
    one_line(code, err, 1, "No space left on device", "partial file was removed")
    assert _listing(weights_dir) == []


def test_help_does_not_import_the_http_client():
    probe = (
        "import sys\nfrom aerialseg.cli.main import main\n"
        "try:\n    main(['weights', 'pull', '--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'urllib3' not in sys.modules, 'urllib3 imported'"
    )
    subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, timeout=60)
