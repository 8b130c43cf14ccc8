"""Official weights by name: download, verify, cache (samkit.weights), all on loopback.

A stdlib HTTP server on 127.0.0.1 serves a checkpoint made here. It is registered as an official
variant ``sam2.1_hiera_test`` (the samkit_nano architecture, so the strict load that verifies
each download really runs, in a fraction of a second); the real table is checked as data. A guard
on ``socket.create_connection`` records any attempt to reach another host (none may happen).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import socket
import sys
import threading
import time
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import samkit
from samkit import configs
from samkit.builder import load_model
from samkit.cli.main import main
from samkit.errors import CheckpointError, ConfigError, DownloadError
from samkit.image_predictor import ImagePredictor
from samkit.weights import official
from samkit.weights.cache import cached_checkpoint, cache_dir, download_checkpoint, read_manifest
from samkit.weights.official import OFFICIAL, OfficialCheckpoint, resolve_name

NAME = "sam2.1_hiera_test"
FILE = f"{NAME}.pt"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


# --------------------------------------------------------------------------- the loopback server
@dataclasses.dataclass
class Route:
    body: bytes = b""
    status: int = 200
    length: int | None = None  # the Content-Length sent; None: the body's length


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        owner: Server = self.server.owner  # type: ignore[attr-defined]
        owner.requests.append(self.path)
        route = owner.routes.get(self.path)
        if route is None or route.status != 200:
            self.send_error(404 if route is None else route.status)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(route.body) if route.length is None else route.length))
        self.end_headers()
        self.wfile.write(route.body)  # HTTP/1.0: the connection closes after this, short or not

    def log_message(self, *args: object) -> None:
        pass


class Server:
    """``routes``: path -> Route; ``requests``: the paths asked for, in order."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[str] = []
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture(scope="module")
def ckpt_bytes(tmp_path_factory) -> bytes:
    """A real checkpoint of the test variant (samkit_nano's architecture, random weights)."""
    torch.manual_seed(3)
    cfg = dataclasses.replace(configs.samkit_nano(), name=NAME)
    path = samkit.save_checkpoint(samkit.build_model(cfg, pretrained=False), tmp_path_factory.mktemp("w") / FILE)
    return path.read_bytes()


@pytest.fixture()
def reached(monkeypatch) -> list:
    """Hosts other than loopback that code tried to connect to (refused before any packet)."""
    attempts: list = []
    real = socket.create_connection

    def guarded(address, *args, **kwargs):
        if address[0] not in LOOPBACK:
            attempts.append(address)
            raise AssertionError(f"a test tried to reach {address}")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", guarded)
    return attempts


@pytest.fixture()
def server(monkeypatch, tmp_path, ckpt_bytes, reached):
    """The loopback server with the test variant registered and the cache in tmp_path/home."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
                "SAMKIT_WEIGHTS_URL", "SAMKIT_DOWNLOAD_TIMEOUT", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SAMKIT_HOME", str(tmp_path / "home"))
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # never the Hub, installed or not
    srv = Server()
    srv.routes[f"/092824/{FILE}"] = Route(ckpt_bytes)
    monkeypatch.setitem(configs.REGISTRY, NAME, lambda: dataclasses.replace(configs.samkit_nano(), name=NAME))
    monkeypatch.setitem(OFFICIAL, NAME, OfficialCheckpoint(variant=NAME, url=f"{srv.url}/092824/{FILE}",
                                                           file_name=FILE, hf_repo="facebook/sam2.1-hiera-test"))
    yield srv
    srv.close()
    assert not reached, f"tried to reach {reached}"


def _leftovers(home: Path) -> list[str]:
    """Files in the cache that could pass for a checkpoint (anything but the manifest)."""
    return sorted(p.name for p in home.glob("*") if p.name != "manifest.json") if home.exists() else []


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _set_url(monkeypatch, url: str) -> None:
    monkeypatch.setitem(OFFICIAL, NAME, dataclasses.replace(OFFICIAL[NAME], url=url))


# --------------------------------------------------------------------------- the table
def test_the_table_holds_the_eight_official_checkpoints():
    assert len(OFFICIAL) == 8 and set(OFFICIAL) <= set(samkit.list_models())
    for version, date in (("sam2", "072824"), ("sam2.1", "092824")):
        for size in ("tiny", "small", "base_plus", "large"):
            e = OFFICIAL[f"{version}_hiera_{size}"]
            assert e.file_name == f"{version}_hiera_{size}.pt"
            assert e.url == f"https://dl.fbaipublicfiles.com/segment_anything_2/{date}/{e.file_name}"
            assert e.hf_repo == f"facebook/{version}-hiera-{size.replace('_', '-')}"
            assert e.sha256 is None  # not known offline; checked where filled (see the digest test)


@pytest.mark.parametrize("variant", sorted(OFFICIAL))
def test_hub_ids_name_the_same_variants(variant):
    repo = OFFICIAL[variant].hf_repo
    assert resolve_name(repo) == variant and resolve_name(repo.upper()) == variant
    assert official.official_checkpoint(repo) is OFFICIAL[variant]


def test_unknown_names_are_clear():
    with pytest.raises(ConfigError, match="unknown Hugging Face model id 'facebook/sam3'.*facebook/sam2.1-hiera-tiny"):
        resolve_name("facebook/sam3")
    with pytest.raises(ConfigError, match="'samkit_nano' has no official checkpoint to download"):
        download_checkpoint("samkit_nano")
    assert resolve_name("sam2.1_hiera_t") == "sam2.1_hiera_tiny"


def test_cache_folder_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("SAMKIT_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "samkit"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert cache_dir() == tmp_path / "user" / ".cache" / "samkit"
    monkeypatch.setenv("SAMKIT_HOME", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"
    assert not (tmp_path / "mine").exists()  # looking never creates it


# --------------------------------------------------------------------------- downloading
def test_first_call_downloads_verifies_and_records_then_the_cache_is_used(server, ckpt_bytes):
    home = cache_dir()
    path = download_checkpoint(NAME, progress=False)
    assert path == home / FILE and path.read_bytes() == ckpt_bytes
    assert server.requests == [f"/092824/{FILE}"]
    manifest = json.loads((home / "manifest.json").read_text())
    row = manifest["files"][FILE]
    assert row["sha256"] == hashlib.sha256(ckpt_bytes).hexdigest() and row["size"] == len(ckpt_bytes)
    assert row["variant"] == NAME and row["url"] == f"{server.url}/092824/{FILE}" and row["source"] == "url"
    assert _leftovers(home) == [FILE]  # no .part

    assert download_checkpoint(NAME, progress=False) == path  # cached: no second request
    model = samkit.build_model(NAME, pretrained=True)
    model2, text = load_model(NAME, pretrained=True)
    pred = ImagePredictor.from_pretrained(NAME)
    assert server.requests == [f"/092824/{FILE}"]
    want = samkit.build_model(checkpoint=path).state_dict()
    for m in (model, model2, pred.model):
        assert all(torch.equal(m.state_dict()[k], want[k]) for k in want)
    assert text == f"{NAME} from {path} (Meta's official weights, cached)"


def test_pretrained_none_never_downloads(server):
    model = samkit.build_model(NAME)  # random weights, as for every official name without pretrained=True
    _, text = load_model(NAME)
    assert load_model("facebook/sam2.1-hiera-test")[0].cfg.name == NAME
    assert server.requests == [] and not cache_dir().exists()
    assert text.startswith(f"{NAME} with RANDOM weights") and "--pretrained" in text
    assert model.cfg.name == NAME


def test_a_wrong_digest_is_refused_and_deleted(server, monkeypatch):
    monkeypatch.setitem(OFFICIAL, NAME, dataclasses.replace(OFFICIAL[NAME], sha256="0" * 64))
    with pytest.raises(DownloadError, match=f"SHA-256 is [0-9a-f]{{64}}, but {NAME}'s official checkpoint has 0000"):
        download_checkpoint(NAME, progress=False)
    assert _leftovers(cache_dir()) == [] and read_manifest() == {}


def test_a_right_digest_passes(server, monkeypatch, ckpt_bytes):
    digest = hashlib.sha256(ckpt_bytes).hexdigest()
    monkeypatch.setitem(OFFICIAL, NAME, dataclasses.replace(OFFICIAL[NAME], sha256=digest))
    assert download_checkpoint(NAME, progress=False).read_bytes() == ckpt_bytes


def test_a_cached_file_that_differs_from_a_digest_filled_later_is_refused(server, monkeypatch):
    download_checkpoint(NAME, progress=False)
    monkeypatch.setitem(OFFICIAL, NAME, dataclasses.replace(OFFICIAL[NAME], sha256="1" * 64))
    with pytest.raises(CheckpointError, match=f"is not {NAME}'s official file: its SHA-256 is"):
        cached_checkpoint(NAME)


def test_a_truncated_transfer_is_refused(server, ckpt_bytes):
    server.routes[f"/092824/{FILE}"] = Route(ckpt_bytes[: len(ckpt_bytes) // 2], length=len(ckpt_bytes))
    with pytest.raises(DownloadError) as info:
        download_checkpoint(NAME, progress=False)
    msg = str(info.value)
    assert f"stopped after {len(ckpt_bytes) // 2} of {len(ckpt_bytes)} bytes (truncated)" in msg
    assert "Nothing was kept" in msg and str(cache_dir() / FILE) in msg
    assert _leftovers(cache_dir()) == [] and cached_checkpoint(NAME) is None


def test_a_killed_download_leaves_a_part_file_that_never_passes(server, ckpt_bytes):
    home = cache_dir()
    home.mkdir(parents=True)
    part = home / f"{FILE}.part"
    part.write_bytes(ckpt_bytes[:1000])  # what a download killed mid-way leaves
    assert cached_checkpoint(NAME) is None
    route = server.routes.pop(f"/092824/{FILE}")
    with pytest.raises(DownloadError, match="HTTP 404"):  # the model is not built from it
        samkit.build_model(NAME, pretrained=True)
    assert _leftovers(home) == []  # the failed call cleaned it
    part.write_bytes(ckpt_bytes[:1000])
    server.routes[f"/092824/{FILE}"] = route
    path = download_checkpoint(NAME, progress=False)  # starts again
    assert path.read_bytes() == ckpt_bytes and _leftovers(home) == [FILE]


def test_a_file_that_is_not_a_checkpoint_is_refused_by_the_strict_load(server):
    server.routes[f"/092824/{FILE}"] = Route(b"<html>not a checkpoint</html>" * 100)
    with pytest.raises(DownloadError, match=f"did not give a usable {NAME} checkpoint: .* is not a checkpoint"):
        download_checkpoint(NAME, progress=False)
    assert _leftovers(cache_dir()) == []


def test_a_checkpoint_of_another_variant_is_refused_through_the_mirror(server, monkeypatch, ckpt_bytes):
    # the real table entry of sam2.1_hiera_tiny, pointed at the loopback mirror, serving nano weights
    monkeypatch.delitem(configs.REGISTRY, NAME)
    monkeypatch.setenv("SAMKIT_WEIGHTS_URL", f"{server.url}/mirror/")
    server.routes["/mirror/sam2.1_hiera_tiny.pt"] = Route(ckpt_bytes)
    with pytest.raises(DownloadError, match="is a samkit_nano checkpoint, but the model 'sam2.1_hiera_tiny' was"):
        download_checkpoint("sam2.1_hiera_tiny", progress=False)
    assert server.requests == ["/mirror/sam2.1_hiera_tiny.pt"] and _leftovers(cache_dir()) == []


def test_the_mirror_variable_replaces_the_address_up_to_the_file_name(server, monkeypatch, ckpt_bytes):
    monkeypatch.setenv("SAMKIT_WEIGHTS_URL", f"{server.url}/mirror")
    server.routes[f"/mirror/{FILE}"] = Route(ckpt_bytes)
    download_checkpoint(NAME, progress=False)
    assert server.requests == [f"/mirror/{FILE}"]
    assert read_manifest()[FILE].url == f"{server.url}/mirror/{FILE}"


def test_an_unreachable_server_gives_the_offline_message_quickly(server, monkeypatch):
    url = f"http://127.0.0.1:{_closed_port()}/092824/{FILE}"
    _set_url(monkeypatch, url)
    t0 = time.perf_counter()
    with pytest.raises(DownloadError) as info:
        samkit.build_model(NAME, pretrained=True)
    assert time.perf_counter() - t0 < 5
    msg = str(info.value)
    assert f"could not download {NAME} from {url}" in msg and "refused (offline" in msg
    assert f"put it at {cache_dir() / FILE}" in msg and "checkpoint=PATH" in msg and "SAMKIT_WEIGHTS_URL" in msg
    assert "Traceback" not in msg and info.value.__cause__ is None and info.value.__suppress_context__


def test_a_name_that_does_not_resolve_says_offline(server, monkeypatch):
    def no_dns(address, *args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "create_connection", no_dns)  # as offline, without asking a resolver
    monkeypatch.setenv("SAMKIT_WEIGHTS_URL", "https://mirror.invalid/sam2")
    with pytest.raises(DownloadError) as info:
        download_checkpoint("sam2.1_hiera_tiny", progress=False)
    msg = str(info.value)
    assert "from https://mirror.invalid/sam2/sam2.1_hiera_tiny.pt: the host name could not be resolved" in msg
    assert "are you offline?" in msg and f"(or Meta's {OFFICIAL['sam2.1_hiera_tiny'].url})" in msg


def test_a_server_that_never_answers_times_out(server, monkeypatch):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # connections queue up; nothing ever answers
    try:
        _set_url(monkeypatch, f"http://127.0.0.1:{listener.getsockname()[1]}/{FILE}")
        monkeypatch.setenv("SAMKIT_DOWNLOAD_TIMEOUT", "0.5")
        t0 = time.perf_counter()
        with pytest.raises(DownloadError, match=r"no answer within 0.5 s \(timed out"):
            download_checkpoint(NAME, progress=False)
        assert time.perf_counter() - t0 < 5
    finally:
        listener.close()


@pytest.mark.parametrize("status, words", [(404, "Not Found"), (500, "Internal Server Error")])
def test_http_errors_name_the_url(server, status, words):
    server.routes[f"/092824/{FILE}"] = Route(status=status)
    with pytest.raises(DownloadError) as info:
        download_checkpoint(NAME, progress=False)
    msg = str(info.value)
    assert f"from {server.url}/092824/{FILE}: the server answered HTTP {status} {words}" in msg
    assert _leftovers(cache_dir()) == []


def test_a_corrupted_cached_file_is_caught_on_next_use(server, ckpt_bytes):
    path = download_checkpoint(NAME, progress=False)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte changed
    path.write_bytes(bytes(data))
    for call in (lambda: download_checkpoint(NAME, progress=False), lambda: samkit.build_model(NAME, pretrained=True)):
        with pytest.raises(CheckpointError, match=rf"cached checkpoint .*{FILE} is corrupt: its SHA-256 .*delete it and "
                                                  rf"download it again: samkit download {NAME} --force"):
            call()
    path.write_bytes(bytes(data[:100]))
    with pytest.raises(CheckpointError, match="is corrupt: 100 bytes"):
        cached_checkpoint(NAME)
    assert download_checkpoint(NAME, force=True, progress=False).read_bytes() == ckpt_bytes
    assert len(server.requests) == 2 and cached_checkpoint(NAME) == path


def test_a_file_put_into_the_cache_by_hand_is_verified_and_recorded(server, ckpt_bytes):
    home = cache_dir()
    home.mkdir(parents=True)
    (home / FILE).write_bytes(ckpt_bytes)
    assert cached_checkpoint(NAME) == home / FILE and read_manifest()[FILE].source == "local"
    (home / FILE).unlink()
    assert cached_checkpoint(NAME) is None and read_manifest() == {}  # deleted by hand: not cached
    (home / FILE).write_bytes(b"junk")
    with pytest.raises(CheckpointError, match=f"in samkit's weights cache but is not a usable {NAME} checkpoint"):
        cached_checkpoint(NAME)
    assert server.requests == []


# --------------------------------------------------------------------------- Hugging Face ids
def test_without_huggingface_hub_a_hub_id_falls_back_to_the_url(server, ckpt_bytes):
    path = download_checkpoint("facebook/sam2.1-hiera-test", progress=False)
    assert path.read_bytes() == ckpt_bytes and server.requests == [f"/092824/{FILE}"]


def test_without_huggingface_hub_and_offline_the_message_says_both(server, monkeypatch):
    url = f"http://127.0.0.1:{_closed_port()}/{FILE}"
    _set_url(monkeypatch, url)
    with pytest.raises(DownloadError) as info:
        ImagePredictor.from_pretrained("facebook/sam2.1-hiera-test")
    msg = str(info.value)
    assert msg.startswith("facebook/sam2.1-hiera-test: huggingface_hub is not installed (pip install huggingface_hub)")
    assert f"the direct download did not work either: could not download {NAME} from {url}" in msg


def test_with_huggingface_hub_a_hub_id_uses_hf_hub_download(server, monkeypatch, tmp_path, ckpt_bytes):
    calls = []
    hub_file = tmp_path / "hub" / FILE
    hub_file.parent.mkdir()
    hub_file.write_bytes(ckpt_bytes)

    def hf_hub_download(repo_id: str, filename: str) -> str:
        calls.append((repo_id, filename))
        return str(hub_file)

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(hf_hub_download=hf_hub_download))
    pred = ImagePredictor.from_pretrained("facebook/sam2.1-hiera-test")
    assert calls == [("facebook/sam2.1-hiera-test", FILE)] and server.requests == []
    row = read_manifest()[FILE]
    assert row.source == "huggingface" and Path(row.path) == hub_file
    assert pred.model.cfg.name == NAME
    assert download_checkpoint(NAME, progress=False) == hub_file and len(calls) == 1  # cached from now on


def test_a_failing_hub_download_falls_back_to_the_url(server, monkeypatch, ckpt_bytes):
    def hf_hub_download(repo_id: str, filename: str) -> str:
        raise OSError("offline")

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(hf_hub_download=hf_hub_download))
    assert download_checkpoint("facebook/sam2.1-hiera-test", progress=False).read_bytes() == ckpt_bytes
    assert server.requests == [f"/092824/{FILE}"]


# --------------------------------------------------------------------------- the command line
def test_download_and_models_commands(server, capsys, ckpt_bytes):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert f"not downloaded (samkit download {NAME})" in out
    assert "weights ship with samkit (samkit_nano.safetensors)" in out and f"weights cache: {cache_dir()}" in out

    assert main(["download", NAME, "samkit_nano", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"{NAME}: {cache_dir() / FILE} ({len(ckpt_bytes) / 1e6:.1f} MB)" in out
    assert "samkit_nano: " in out and "ships with samkit, nothing to download" in out
    assert main(["download", "facebook/sam2.1-hiera-test", "--no-progress"]) == 0  # cached: no request
    assert server.requests == [f"/092824/{FILE}"]
    capsys.readouterr()

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith(NAME + " "))
    assert f"cached: {cache_dir() / FILE}" in line
    assert "not downloaded (samkit download sam2.1_hiera_tiny)" in out


def test_download_command_errors(server, monkeypatch, capsys):
    _set_url(monkeypatch, f"http://127.0.0.1:{_closed_port()}/{FILE}")
    assert main(["download", NAME, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"samkit download: error: could not download {NAME} from http://127.0.0.1:")
    assert main(["download", "facebook/nothing"]) == 2
    assert "unknown Hugging Face model id" in capsys.readouterr().err


def test_segment_with_pretrained_downloads_once(server, tmp_path, capsys):
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(photo)
    args = ["segment", str(photo), "--model", NAME, "--pretrained", "--point", "40,30", "--out"]
    assert main(args + [str(tmp_path / "a.png")]) == 0
    assert main(args + [str(tmp_path / "b.png")]) == 0
    out = capsys.readouterr().out
    assert f"model: {NAME} from {cache_dir() / FILE} (Meta's official weights, cached)" in out
    assert server.requests == [f"/092824/{FILE}"]
    assert main(["segment", str(photo), "--checkpoint", str(cache_dir() / FILE), "--pretrained", "--point", "4,3",
                 "--out", str(tmp_path / "c.png")]) == 2
    assert "not both" in capsys.readouterr().err
