"""The tokenlm command line, end to end (subprocesses) and in-process for the quick cases."""

import json
import math
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import soundfile as sf

import tokenlm.cli as cli
from tokenlm.cli import main

SR_IN, SECONDS = 22050, 1.3  # 28665 samples at 22.05 kHz -> exactly 20800 at 16 kHz
N16 = 20800


def write_tones(path, sr=SR_IN, seconds=SECONDS, channels=2):
    rng = np.random.default_rng(0)
    t = np.arange(int(round(sr * seconds))) / sr
    x = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 660 * t) + 0.02 * rng.standard_normal(t.size)
    sf.write(str(path), np.stack([x, 0.5 * x][:channels], 1).astype(np.float32), sr)
    return path


def run(*args, cwd=None):
    env = {k: v for k, v in os.environ.items() if k not in ("TOKENLM_DEBUG", "PYTHONWARNINGS")}
    return subprocess.run(
        [sys.executable, "-m", "tokenlm.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env,
        timeout=120,
    )


def lines(text):
    return [ln for ln in text.splitlines() if ln.strip()]


def assert_one_error_line(stderr):
    got = lines(stderr)
    assert len(got) == 1 and got[0].startswith("tokenlm: error:"), stderr
    assert "Traceback" not in stderr
    return got[0]


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    """`tokenlm encode` of a 1.3 s stereo 22.05 kHz file with the tiny codec (one subprocess)."""
    d = tmp_path_factory.mktemp("cli")
    src = write_tones(d / "in.wav")
    proc = run("encode", src, "-o", d / "in.tok", "--codec", "tiny")
    return d, src, d / "in.tok", proc


# ---- end to end (subprocesses) -------------------------------------------------------------


def test_encode(encoded):
    _, _, tok, proc = encoded
    assert proc.returncode == 0, proc.stderr
    assert tok.exists()
    err = lines(proc.stderr)
    # the untrained-codec warning: exactly one line, not Python's two-line format
    warns = [ln for ln in err if "untrained" in ln]
    assert len(warns) == 1 and warns[0].startswith("tokenlm: warning: codec 'tiny' is untrained"), proc.stderr
    assert not any(ln.startswith(" ") for ln in err), proc.stderr
    assert any(ln.startswith(f"wrote {tok}: 33 frames x 4 codebooks, 0.60 kbps, 1.30 s") for ln in err), proc.stderr


def test_info_json_then_decode(encoded):
    d, _, tok, _ = encoded
    proc = run("info", tok, "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["kind"] == "tokens"
    assert (info["sample_rate"], info["frame_rate"], info["num_codebooks"], info["codebook_size"]) == (16000, 25.0, 4, 64)
    assert info["num_frames"] == math.ceil(N16 / 640) and info["num_samples"] == N16
    assert info["bitrate_kbps"] == pytest.approx(25 * 4 * 6 / 1000)
    assert info["duration_s"] == pytest.approx(SECONDS)
    assert info["codec_source"] == "tiny"

    out = d / "out.wav"
    proc = run("decode", tok, "-o", out)  # codec taken from the token file
    assert proc.returncode == 0, proc.stderr
    wav, sr = sf.read(str(out), always_2d=True)
    assert sr == 16000 and wav.shape == (N16, 1)


def test_decode_with_the_wrong_codec(encoded):
    d, _, tok, _ = encoded
    out = d / "wrong.wav"
    out.write_bytes(b"existing")
    proc = run("decode", tok, "-o", out, "--codec", "speech16k")
    assert proc.returncode == 1
    line = assert_one_error_line(proc.stderr)  # no untrained warning for a codec that is refused
    assert str(tok) in line and "fingerprint" in line and "--codec tiny" in line
    assert out.read_bytes() == b"existing"


@pytest.mark.parametrize("case", ["junk", "empty", "zero_samples", "nan", "missing"])
def test_bad_audio_input(tmp_path, case):
    src = tmp_path / f"{case}.wav"
    if case == "junk":
        src.write_bytes(b"not audio " * 50)
    elif case == "empty":
        src.write_bytes(b"")
    elif case == "zero_samples":
        sf.write(str(src), np.zeros((0, 1), np.float32), 16000)
    elif case == "nan":
        x = np.full((1600, 1), 0.1, np.float32)
        x[10] = np.nan
        sf.write(str(src), x, 16000, subtype="FLOAT")
    out = tmp_path / "out.tok"
    proc = run("encode", src, "-o", out, "--codec", "tiny")
    assert proc.returncode == 1
    assert str(src) in assert_one_error_line(proc.stderr)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ([f"{case}.wav"] if case != "missing" else [])


def test_help_does_not_import_torch():
    code = "import sys, tokenlm.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# ---- in-process ---------------------------------------------------------------------------


def cli_json(capsys, *args):
    capsys.readouterr()
    assert main([*map(str, args), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_fewer_codebooks_lower_the_bitrate(encoded, tmp_path, capsys):
    _, src, _, _ = encoded
    assert main(["encode", str(src), "-o", str(tmp_path / "q2.tok"), "--codec", "tiny", "--codebooks", "2"]) == 0
    err = lines(capsys.readouterr().err)
    assert sum("untrained" in ln for ln in err) == 1 and all(ln.startswith(("tokenlm: warning:", "wrote")) for ln in err)
    info = cli_json(capsys, "info", tmp_path / "q2.tok")
    assert info["num_codebooks"] == 2 and info["bitrate_kbps"] == pytest.approx(0.3)
    assert main(["decode", str(tmp_path / "q2.tok"), "-o", str(tmp_path / "q2.flac")]) == 0
    assert sf.info(str(tmp_path / "q2.flac")).frames == N16


def test_user_errors_are_one_line(encoded, tmp_path, capsys):
    _, src, tok, _ = encoded
    cases = [
        (["encode", src, "-o", tmp_path / "x.tok", "--codec", "tiny", "--codebooks", "9"], "--codebooks must be 1..4"),
        (["encode", src, "-o", tmp_path / "x.wav", "--codec", "tiny"], "must end in '.tok'"),
        (["encode", src, "-o", tmp_path / "x.tok", "--codec", tmp_path / "nope"], "unknown codec"),
        (["decode", tok, "-o", tmp_path / "x.mp3"], "cannot write '.mp3'"),
        (["decode", src, "-o", tmp_path / "x.wav"], "not a token file"),
        (["decode", tmp_path / "nope.tok", "-o", tmp_path / "x.wav"], "no such file"),
        (["info", tmp_path / "nope.bin"], "no such file"),
    ]
    for args, match in cases:
        capsys.readouterr()
        assert main([str(a) for a in args]) == 1, args
        captured = capsys.readouterr()
        assert match in assert_one_error_line(captured.err), (args, captured.err)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_usage_errors_exit_2(capsys):
    assert main([]) == 2
    assert main(["encode"]) == 2
    assert main(["encode", "a.wav", "-o", "a.tok", "--codebooks", "0"]) == 2
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("tokenlm ")


def test_info_on_audio_checkpoint_and_junk(encoded, tmp_path, capsys):
    import tokenlm.codecs as tc

    _, src, _, _ = encoded
    info = cli_json(capsys, "info", src)
    assert info["kind"] == "audio" and info["sample_rate"] == SR_IN and info["channels"] == 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ckpt = tc.save_codec(tc.load("tiny"), tmp_path / "ckpt")
    info = cli_json(capsys, "info", ckpt)
    assert info["kind"] == "codec" and info["trained"] is False and info["codebook_size"] == 64
    assert info["config"]["config"]["num_codebooks"] == 4
    assert main(["info", str(ckpt / "model.safetensors")]) == 0
    out = capsys.readouterr().out
    assert "kind: codec" in out and "fingerprint: " in out
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01junk" * 10)
    assert main(["info", str(junk)]) == 1
    assert "not a token file, audio file or codec checkpoint" in assert_one_error_line(capsys.readouterr().err)


def test_internal_errors_and_interrupts(monkeypatch, capsys):
    def boom(args):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(cli, "cmd_info", boom)
    monkeypatch.delenv("TOKENLM_DEBUG", raising=False)
    assert main(["info", "x"]) == 1
    err = lines(capsys.readouterr().err)
    assert err == ["tokenlm: internal error: RuntimeError: boom second line (set TOKENLM_DEBUG=1 for a traceback)"]
    monkeypatch.setenv("TOKENLM_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom"):
        main(["info", "x"])

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_info", interrupted)
    assert main(["info", "x"]) == 130
