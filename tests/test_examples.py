"""The examples run (with the fast 'tiny' codec) and report what they did."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_codec_roundtrip_example(tmp_path):
    r = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "codec_roundtrip.py"), "--codec", "tiny", "--out-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "UNTRAINED" in r.stdout and "kbps" in r.stdout and "STOI" in r.stdout
    assert (tmp_path / "sample.tok").exists() and (tmp_path / "sample_decoded.wav").exists()


def test_asr_tts_example(tmp_path):
    from tokenlm.lm.checkpoint import bundled_models

    r = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "asr_tts.py"), "--out-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    if "asr" in bundled_models():
        assert "transcript:" in r.stdout and "x real time" in r.stdout
    else:
        assert "ASR: skipped" in r.stdout
    if "tts" in bundled_models():
        assert (tmp_path / "spoken.wav").exists() and "heard back" in r.stdout
    elif "asr" in bundled_models():
        assert "TTS: skipped" in r.stdout


def test_duplex_example(tmp_path):
    from tokenlm.lm.checkpoint import bundled_models

    r = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "duplex_demo.py"), "--out-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    if "duplex" in bundled_models():
        assert "model says:" in r.stdout and (tmp_path / "duplex.wav").exists() and "tokenlm serve" in r.stdout
    else:
        assert "duplex: skipped" in r.stdout
