"""``samkit studio`` on the command line: the printed URL, the token off loopback, Ctrl+C, errors."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from samkit.cli.main import main
from samkit.cli.studio import is_loopback
from tests.studio.helpers import write_scenes

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.0.0.2", True), ("localhost", True),
                                            ("::1", True), ("0.0.0.0", False), ("192.168.1.4", False),
                                            ("::", False), ("example.org", False)])
def test_loopback_addresses(host, loopback) -> None:
    assert is_loopback(host) is loopback


def _start(args: list[str]) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "samkit.cli", "studio", *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("samkit studio: http"):
            return proc, line
    proc.kill()
    raise AssertionError("the studio printed no URL:\n" + "".join(lines))


def test_off_loopback_a_token_is_made_and_required_and_ctrl_c_stops(tmp_path) -> None:
    write_scenes(tmp_path / "images", count=2)
    proc, line = _start([str(tmp_path / "images"), "--out", str(tmp_path / "out"), "--host", "0.0.0.0",
                         "--port", "0"])
    try:
        match = re.search(r"http://0\.0\.0\.0:(\d+)/\?token=([\w-]+) \(2 images, 0 annotated\)", line)
        assert match, line
        base = f"http://127.0.0.1:{match[1]}"
        assert httpx.get(f"{base}/api/info").status_code == 401
        assert httpx.get(f"{base}/api/info", headers={"X-Studio-Token": match[2]}).json()["images"] == 2
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0  # Ctrl+C is how a studio ends: a clean stop
    assert "stopped" in proc.stdout.read()


def test_loopback_needs_no_token_and_a_busy_port_is_a_clear_error(tmp_path, capsys) -> None:
    write_scenes(tmp_path / "images", count=1)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        code = main(["studio", str(tmp_path / "images"), "--out", str(tmp_path / "out"),
                     "--port", str(busy.getsockname()[1])])
    finally:
        busy.close()
    assert code == 2 and "is in use" in capsys.readouterr().err


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing", "does not exist"),
    (lambda p: (p / "file.png").write_bytes(b"x") and p / "file.png", "is a file, not a folder"),
])
def test_bad_images_folder(tmp_path, capsys, make, message) -> None:
    assert main(["studio", str(make(tmp_path)), "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err


def test_bad_port(tmp_path, capsys) -> None:
    (tmp_path / "images").mkdir()
    assert main(["studio", str(tmp_path / "images"), "--out", str(tmp_path / "out"), "--port", "70000"]) == 2
    assert "--port is 0 to 65535" in capsys.readouterr().err
