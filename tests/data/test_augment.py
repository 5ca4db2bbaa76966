import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tokenlm.audio import load_audio, save_audio
from tokenlm.data.augment import choose_factors, perturb_manifest, speed_perturb
from tokenlm.data.manifest import read_manifest, write_manifest
from tokenlm.errors import TokenLMError

ROOT = Path(__file__).resolve().parents[2]
SR = 16000


def _tone(freq: float, seconds: float = 1.0) -> torch.Tensor:
    t = torch.arange(int(SR * seconds)) / SR
    return (0.5 * torch.sin(2 * math.pi * freq * t))[None]


def _peak_hz(wav: torch.Tensor) -> float:
    spec = torch.fft.rfft(wav[0]).abs()
    return float(spec.argmax()) * SR / wav.shape[-1]


def test_speed_perturb_scales_length_and_pitch():
    wav = _tone(440.0)
    fast = speed_perturb(wav, 1.25, SR)
    assert abs(fast.shape[-1] - SR / 1.25) <= 1
    assert _peak_hz(fast) == pytest.approx(440.0 * 1.25, abs=3)
    slow = speed_perturb(wav, 0.8, SR)
    assert abs(slow.shape[-1] - SR / 0.8) <= 1
    assert _peak_hz(slow) == pytest.approx(440.0 * 0.8, abs=3)
    assert torch.equal(speed_perturb(wav, 1.0, SR), wav)
    with pytest.raises(TokenLMError, match="out of range"):
        speed_perturb(wav, 3.0, SR)


def test_choose_factors_deterministic_and_distinct():
    a = choose_factors("utt-1", 0, factor_range=(0.9, 1.3), copies=3)
    assert a == choose_factors("utt-1", 0, factor_range=(0.9, 1.3), copies=3)
    assert all(0.9 <= f <= 1.3 for f in a) and len(set(a)) == len(a)
    assert choose_factors("utt-2", 0, factor_range=(0.9, 1.3), copies=3) != a
    assert choose_factors("x", 0, factors=[0.9, 1.1, 1.1]) == [0.9, 1.1]
    with pytest.raises(TokenLMError, match="either"):
        choose_factors("x", 0)
    with pytest.raises(TokenLMError, match="empty"):
        choose_factors("x", 0, factor_range=(1.2, 1.1))


def _corpus(tmp_path: Path) -> Path:
    entries = []
    for i, engine in enumerate(["flite", "espeak-ng", "flite"]):
        path = tmp_path / "audio" / f"u{i}.wav"
        save_audio(path, _tone(200.0 + 50 * i, 2.0), SR)
        entries.append(
            {
                "id": f"u{i}",
                "audio": str(path),
                "text": "hello there",
                "words": [{"word": "hello", "start": 0.5, "end": 1.0}, {"word": "there", "start": 1.0, "end": 1.9}],
                "voice": "awb" if engine == "flite" else "en-us",
                "engine": engine,
                "duration": 2.0,
                "sample_rate": SR,
                "split": "train",
            }
        )
    manifest = tmp_path / "train.jsonl"
    write_manifest(manifest, entries)
    return manifest


def test_perturb_manifest_scales_words_and_reuses_files(tmp_path):
    entries = read_manifest(_corpus(tmp_path))
    out = tmp_path / "sp"
    new = perturb_manifest(entries, out, factors=[1.25], select=lambda e: e["engine"] == "flite")
    assert [e["id"] for e in new] == ["u0+sp1.25", "u2+sp1.25"]
    e = new[0]
    assert e["voice"] == "awb+sp1.25" and e["source"] == "u0" and e["speed"] == 1.25
    assert e["duration"] == pytest.approx(2.0 / 1.25, abs=1e-3)
    assert [w["start"] for w in e["words"]] == [0.4, 0.8] and e["words"][1]["end"] == pytest.approx(1.52)
    wav, sr = load_audio(e["audio"])
    assert sr == SR and _peak_hz(wav) == pytest.approx(250.0, abs=3)
    write_manifest(out / "train.jsonl", new)
    assert [x["id"] for x in read_manifest(out / "train.jsonl")] == ["u0+sp1.25", "u2+sp1.25"]
    # a second run reuses the files it finds (resume) and gives the same entries
    stamp = Path(e["audio"]).stat().st_mtime_ns
    again = perturb_manifest(entries, out, factors=[1.25], select=lambda e: e["engine"] == "flite")
    assert again == new and Path(e["audio"]).stat().st_mtime_ns == stamp
    with pytest.raises(TokenLMError, match="no utterance"):
        perturb_manifest(entries, out, factors=[1.1], select=lambda e: False)


def test_augment_corpus_cli(tmp_path):
    manifest = _corpus(tmp_path)
    cmd = [sys.executable, str(ROOT / "recipes" / "augment_corpus.py"), "--manifest", str(manifest)]
    r = subprocess.run(
        cmd + ["--out", str(tmp_path / "sp"), "--range", "0.9", "1.3", "--copies", "2", "--engine", "espeak-ng",
               "--keep-original", "--no-progress"],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in (tmp_path / "sp" / "train.jsonl").read_text().splitlines()]
    assert lines[0]["id"] == "u1" and len(lines) == 3
    assert all(x["source"] == "u1" for x in lines[1:])
    # the input manifest is never overwritten; a bad manifest is one line, exit 1
    r = subprocess.run(cmd + ["--out", str(tmp_path), "--factors", "1.1"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "overwrite the input" in r.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    r = subprocess.run(
        [sys.executable, str(ROOT / "recipes" / "augment_corpus.py"), "--manifest", str(bad), "--out",
         str(tmp_path / "x"), "--factors", "1.1"],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert r.returncode == 1 and r.stderr.startswith("augment_corpus: error:") and "Traceback" not in r.stderr


def _median_f0(wav: torch.Tensor) -> float:
    import torchaudio.functional as AF

    return float(AF.detect_pitch_frequency(wav, SR, frame_time=0.02, freq_low=60, freq_high=500)[0].median())


@pytest.mark.skipif(not __import__("tokenlm.data.tts", fromlist=["x"]).engine_available("flite"),
                    reason="needs libflite1 (make speech-deps)")
def test_respeak_raises_the_pitch_keeps_words_and_resumes(tmp_path):
    from tokenlm.data.augment import respeak_manifest, respeak_plan

    entries = read_manifest(_corpus(tmp_path))
    entries[0]["text"] = "the quiet evening was long and the voice was low"
    entries[2]["text"] = "   "  # the engine has nothing to say: logged and skipped
    flite = lambda e: e["engine"] == "flite"  # noqa: E731
    low = respeak_manifest(entries, tmp_path / "low", pitch_range=(1.0, 1.0), select=flite, workers=0)
    logged = []
    high = respeak_manifest(entries, tmp_path / "hi", pitch_range=(1.8, 1.8), factor_range=(1.1, 1.1),
                            select=flite, workers=0, log=logged.append)
    assert [e["id"] for e in high] == ["u0+ps1.80+sp1.10"] and len(logged) == 1 and "u2+ps1.80" in logged[0]
    e = high[0]
    assert e["voice"] == "awb+ps1.80+sp1.10" and e["source"] == "u0" and e["pitch"] == 1.8 and e["speed"] == 1.1
    assert [w["word"] for w in e["words"]] == e["text"].split()
    assert all(0 <= w["start"] <= w["end"] <= e["duration"] for w in e["words"])
    lo_wav, _ = load_audio(low[0]["audio"])
    hi_wav, _ = load_audio(e["audio"])
    assert hi_wav.shape[-1] / SR == pytest.approx(e["duration"], abs=1e-3)
    ratio = _median_f0(hi_wav) / _median_f0(lo_wav)
    assert 1.6 < ratio < 2.4, ratio  # 1.8 x 1.1 = 1.98
    # resume: the files and their entries are reused
    stamp = Path(e["audio"]).stat().st_mtime_ns
    again = respeak_manifest(entries, tmp_path / "hi", pitch_range=(1.8, 1.8), factor_range=(1.1, 1.1),
                             select=flite, workers=0)
    assert again == high and Path(e["audio"]).stat().st_mtime_ns == stamp
    assert respeak_plan(entries[0], 0, (1.5, 2.0)) == respeak_plan(entries[0], 0, (1.5, 2.0))
    with pytest.raises(TokenLMError, match="cannot speak it again"):
        respeak_plan({**entries[0], "engine": "user"}, 0, (1.5, 2.0))
    with pytest.raises(TokenLMError, match="pitch range"):
        respeak_plan(entries[0], 0, (2.0, 1.5))


def test_augment_corpus_respeak_arguments(tmp_path):
    manifest = _corpus(tmp_path)
    cmd = [sys.executable, str(ROOT / "recipes" / "augment_corpus.py"), "--manifest", str(manifest), "--out",
           str(tmp_path / "x")]
    for extra in (["--respeak-pitch", "1.5", "2", "--factors", "1.1"], ["--respeak-pitch", "1.5", "2", "--copies", "2",
                                                                         "--range", "1", "1.2"], []):
        r = subprocess.run(cmd + extra, capture_output=True, text=True, cwd=ROOT)
        assert r.returncode == 2 and "usage:" in r.stderr, extra


def _vowel(f0: float = 120.0, formants=(700.0, 1200.0, 2600.0), seconds: float = 1.0) -> torch.Tensor:
    """A harmonic tone at ``f0`` whose harmonics are shaped by resonances at ``formants``."""
    t = torch.arange(int(SR * seconds)) / SR
    wav = torch.zeros_like(t)
    for k in range(1, int(7800 / f0)):
        amp = sum(1.0 / (1 + ((k * f0 - f) / 150.0) ** 2) for f in formants) + 0.01
        wav += amp * torch.sin(2 * math.pi * k * f0 * t)
    return (0.3 * wav / wav.abs().max())[None]


def _centroid_hz(wav: torch.Tensor, lo: float = 900.0, hi: float = 2000.0) -> float:
    spec = torch.fft.rfft(wav[0]).abs() ** 2
    hz = torch.arange(spec.shape[0]) * SR / wav.shape[-1]
    band = (hz >= lo) & (hz <= hi)
    return float((spec[band] * hz[band]).sum() / spec[band].sum())


def test_warp_timbre_moves_formants_keeps_pitch_length_and_level():
    from tokenlm.data.augment import warp_timbre

    wav = _vowel()
    up, down = warp_timbre(wav, 1.2, SR), warp_timbre(wav, 0.85, SR)
    for y in (up, down):
        assert y.shape == wav.shape and torch.isfinite(y).all()
        assert float(y.pow(2).mean().sqrt()) == pytest.approx(float(wav.pow(2).mean().sqrt()), rel=1e-3)
        assert _median_f0(y) == pytest.approx(_median_f0(wav), rel=0.03)  # the pitch stays
    # the 1.2 kHz resonance moves up with alpha > 1 and down with alpha < 1
    assert _centroid_hz(up) > _centroid_hz(wav) + 60 and _centroid_hz(down) < _centroid_hz(wav) - 40
    # a tilt of +6 dB/octave moves energy to the highs; alpha 1 and no filter change nothing
    assert _centroid_hz(warp_timbre(wav, 1.0, SR, tilt_db=6.0), 300, 6000) > _centroid_hz(wav, 300, 6000) + 100
    assert torch.allclose(warp_timbre(wav, 1.0, SR), wav, atol=1e-4)
    with pytest.raises(TokenLMError, match="formant factor"):
        warp_timbre(wav, 3.0, SR)


def test_warp_manifest_keeps_words_is_deterministic_and_resumes(tmp_path):
    from tokenlm.data.augment import choose_timbre, warp_manifest

    entries = read_manifest(_corpus(tmp_path))
    t = choose_timbre("u0", 0, (0.85, 1.25))
    assert t == choose_timbre("u0", 0, (0.85, 1.25)) and t != choose_timbre("u1", 0, (0.85, 1.25))
    assert 0.85 <= t["alpha"] <= 1.25 and abs(t["tilt_db"]) <= 3 and all(abs(db) <= 6 for _, db in t["bumps"])
    new = warp_manifest(entries, tmp_path / "vt", alpha_range=(0.85, 1.25), select=lambda e: e["engine"] == "flite")
    assert [e["source"] for e in new] == ["u0", "u2"]
    e = new[0]
    assert e["id"] == f"u0+vt{t['alpha']:.2f}" and e["voice"] == f"awb+vt{t['alpha']:.2f}"
    assert e["words"] == entries[0]["words"] and e["duration"] == entries[0]["duration"]
    wav, sr = load_audio(e["audio"])
    assert sr == SR and wav.shape[-1] == 2 * SR and _peak_hz(wav) == pytest.approx(200.0, abs=3)
    stamp = Path(e["audio"]).stat().st_mtime_ns
    assert warp_manifest(entries, tmp_path / "vt", alpha_range=(0.85, 1.25),
                         select=lambda e: e["engine"] == "flite") == new
    assert Path(e["audio"]).stat().st_mtime_ns == stamp
    with pytest.raises(TokenLMError, match="formant range"):
        choose_timbre("u0", 0, (1.3, 1.2))


def test_augment_corpus_warp_cli(tmp_path):
    manifest = _corpus(tmp_path)
    cmd = [sys.executable, str(ROOT / "recipes" / "augment_corpus.py"), "--manifest", str(manifest), "--out",
           str(tmp_path / "vt")]
    r = subprocess.run(cmd + ["--warp", "0.9", "1.2", "--engine", "espeak-ng", "--no-progress"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in (tmp_path / "vt" / "train.jsonl").read_text().splitlines()]
    assert len(lines) == 1 and lines[0]["source"] == "u1" and "+vt" in lines[0]["id"]
    for extra in (["--warp", "0.9", "1.2", "--factors", "1.1"], ["--warp", "0.9", "1.2", "--range", "1", "1.2"]):
        r = subprocess.run(cmd + extra, capture_output=True, text=True, cwd=ROOT)
        assert r.returncode == 2 and "usage:" in r.stderr, extra
    r = subprocess.run(cmd + ["--warp", "1.3", "1.2"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "formant range" in r.stderr
