"""benchmarks/load_test.py runs end to end (a tiny duplex model, two clients, a short level) and
reports every frame acknowledged in order; the `tokenlm serve` subprocess it starts stops cleanly."""

import json
import os
import subprocess
import sys
import warnings

import pytest

from .conftest import REPO

pytestmark = pytest.mark.timeout(180)


def test_load_test_smoke(tmp_path):
    from tokenlm.lm.realtime import toy_lm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        toy_lm("duplex", tmp_path / "duplex")
    out = tmp_path / "load.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "load_test.py"), "--mode", "duplex", "--model",
         str(tmp_path / "duplex"), "--clients", "1,2", "--seconds", "1.5", "--threads", "1", "--keep-going",
         "--bound-ms", "5000", "--json", str(out), "--server-log", str(tmp_path / "server.log")],
        capture_output=True, text=True, timeout=150, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "largest N that held real time" in proc.stdout
    res = json.loads(out.read_text())
    assert [lv["clients"] for lv in res["levels"]] == [1, 2]
    for lv in res["levels"]:
        assert lv["frames_sent"] == lv["frames_acked"] == lv["clients"] * 37 and lv["dropped"] == 0
        assert lv["in_order"] and lv["audio_ok"] and not lv["errors"]
        assert lv["latency_ms"]["p50"] > 0 and lv["mean_batch"] >= 1
    assert max(lv["mean_batch"] for lv in res["levels"]) > 1.2  # the two sessions were batched
    log = (tmp_path / "server.log").read_text()
    assert log.count("opened: duplex") == 3 and log.count("closed: duplex") == 3
