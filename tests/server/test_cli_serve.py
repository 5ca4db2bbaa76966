"""`tokenlm serve` as a user runs it: one-line errors, a session, Ctrl-C stops it cleanly."""

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

from tokenlm.cli import main
from tokenlm.server import protocol as P
from tokenlm.server.client import Client

pytestmark = pytest.mark.timeout(120)


def test_every_mode_off_is_an_error(capsys):
    assert main(["serve", "--asr", "none", "--duplex", "none", "--tts", "none"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["tokenlm: error: every mode is switched off: leave at least one of --asr, --duplex, --tts on"]


def test_bad_model_is_one_line(capsys, tmp_path):
    code = main(["serve", "--asr", str(tmp_path / "nope"), "--duplex", "none", "--tts", "none", "--port", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and err[0].startswith("tokenlm: error: --asr ")


def _serve(args, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "tokenlm.cli", "serve", *args], stdout=subprocess.PIPE,
                            stderr=open(tmp_path / "stderr.txt", "w"), text=True, env=env)
    deadline, lines = time.monotonic() + 90, []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if m := re.search(r"listening on (http://\S+/)", line):
            return proc, m.group(1), lines
    proc.kill()
    raise AssertionError("".join(lines) + (tmp_path / "stderr.txt").read_text())


def test_serve_session_and_ctrl_c(tmp_path):
    from tokenlm.lm.realtime import toy_lm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        toy_lm("duplex", tmp_path / "duplex")
    proc, url, lines = _serve(["--port", "0", "--duplex", str(tmp_path / "duplex"), "--asr", "none", "--tts", "none",
                               "--max-sessions", "2", "--threads", "1"], tmp_path)
    try:
        modes_line = proc.stdout.readline()
        assert "modes: duplex (max 2 sessions)" in modes_line and "asr: unavailable (switched off)" in modes_line

        async def session():
            async with Client.connect(url.replace("http", "ws") + "ws", "duplex") as c:
                assert c.info["modes"] == ["duplex"]
                for _ in range(3):
                    await c.send_audio(np.zeros(640, np.int16))
                got = []
                while len([m for m in got if m.kind == P.AUDIO]) < 3:
                    got.append(await c.recv(timeout=30))
                proc.send_signal(signal.SIGINT)  # Ctrl-C with a session open
                rest = []
                while (m := await c.recv(timeout=30)) is not None:
                    rest.append(m)
                return rest

        rest = asyncio.run(session())
        assert [m.data for m in rest if m.kind == P.ERROR] == [{"error": "the server is shutting down", "fatal": True}]
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "tokenlm serve: stopping" in proc.stdout.read()
    err = (tmp_path / "stderr.txt").read_text()
    assert "Traceback" not in err
    assert re.search(r"session 1 opened: duplex slot 0 from 127\.0\.0\.1; 1/2 duplex sessions live", err), err
    assert re.search(r"session 1 closed: duplex slot 0, error: the server is shutting down after", err), err


def test_port_in_use(capsys):
    """A busy port fails at once, before the models load."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        t = time.monotonic()
        assert main(["serve", "--port", str(port)]) == 1
        assert time.monotonic() - t < 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"tokenlm: error: cannot listen on 127.0.0.1:{port}: address already in use (is another server running? "
        "pass --port)"]
    assert main(["serve", "--host", "no.such.host.invalid", "--port", "8998"]) == 1
    assert capsys.readouterr().err.startswith("tokenlm: error: cannot listen on no.such.host.invalid:8998: ")
