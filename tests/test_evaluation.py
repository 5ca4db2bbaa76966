"""Codec evaluation: metric sanity, classic codec runners, inputs, evaluate_codec and `tokenlm eval-codec`."""

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tokenlm import TokenLMError
from tokenlm import evaluation as ev

ROOT = Path(__file__).resolve().parents[1]
SR = 16000
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HAVE_CODEC2 = all(shutil.which(t) for t in ("c2enc", "c2dec"))
HAVE_OPUS = all(shutil.which(t) for t in ("opusenc", "opusdec"))
HAVE_FLITE = shutil.which("flite") is not None


def speech(seconds=2.5, seed=0, sr=SR):
    """Deterministic speech-like signal: gliding voiced harmonics in ~4 Hz syllables with pauses, plus breath noise."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    f0 = 110 + 40 * seed + 30 * np.sin(2 * np.pi * 0.7 * t + seed)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    formant = 1 + 0.8 * np.sin(2 * np.pi * 3.1 * t)
    voiced = sum(np.sin(k * phase) * np.exp(-k / (4 * formant)) for k in range(1, 30))
    syllables = np.clip(np.sin(2 * np.pi * 3.7 * t + seed), 0, None) ** 0.7
    syllables *= (t % 1.1) < 0.85  # pauses
    x = 0.12 * voiced * syllables + 0.004 * rng.standard_normal(n) * (syllables + 0.1)
    return x.astype(np.float64)


def add_noise(x, snr_db, seed=1):
    noise = np.random.default_rng(seed).standard_normal(x.size)
    noise *= np.sqrt(np.mean(x**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    return x + noise


@pytest.fixture(scope="module")
def ref():
    return speech()


# ---- metrics -------------------------------------------------------------------------------


def test_identical_signals_score_perfectly(ref):
    assert ev.stoi(ref, ref) > 0.999
    assert 4.5 < ev.pesq_wb(ref, ref) <= 4.65  # P.862.2 maps a perfect match to about 4.64
    assert ev.si_sdr(ref, ref) > 100
    assert ev.mel_distance(ref, ref) < 1e-9


def test_metrics_fall_monotonically_with_noise(ref):
    snrs = [30, 20, 10, 0]
    scores = [ev._score(ref, add_noise(ref, s))[0] for s in snrs]
    for metric, better in (("stoi", 1), ("pesq_wb", 1), ("si_sdr", 1), ("mel_distance", -1)):
        values = [better * sc[metric] for sc in scores]
        assert values == sorted(values, reverse=True), (metric, values)
    # white noise at a known SNR: SI-SDR is that SNR (the projection barely changes it)
    for s, sc in zip(snrs, scores):
        assert sc["si_sdr"] == pytest.approx(s, abs=0.5)
    assert scores[0]["stoi"] > 0.95 and scores[-1]["stoi"] < 0.9
    assert scores[0]["pesq_wb"] < 4.5 and scores[-1]["pesq_wb"] < 2


def test_si_sdr_is_scale_and_offset_invariant(ref):
    deg = add_noise(ref, 12)
    base = ev.si_sdr(ref, deg)
    assert ev.si_sdr(ref, 0.25 * deg) == pytest.approx(base, abs=1e-6)
    assert ev.si_sdr(ref, 3 * deg + 0.1) == pytest.approx(base, abs=1e-6)
    assert ev.si_sdr(ref, -deg) == pytest.approx(base, abs=1e-6)  # any gain, a sign flip included
    assert ev.si_sdr(torch.tensor(ref)[None], torch.tensor(deg)[None, None]) == pytest.approx(base)


def test_mel_distance_definition(ref):
    deg = add_noise(ref, 10)
    d = ev.mel_distance(ref, deg)
    assert ev.mel_distance(deg, ref) == pytest.approx(d, rel=1e-9)
    assert d > ev.mel_distance(ref, add_noise(ref, 30)) > 0
    # the documented definition, written out
    import torchaudio

    mel = torchaudio.transforms.MelSpectrogram(sample_rate=16000, n_fft=1024, win_length=1024, hop_length=256,
                                               n_mels=80, f_min=0, f_max=8000, power=1.0).double()
    mr, md = mel(torch.from_numpy(ref)), mel(torch.from_numpy(deg))
    assert mr.shape[0] == 80
    assert d == pytest.approx(float((torch.log(mr + 1e-5) - torch.log(md + 1e-5)).abs().mean()), rel=1e-9)


def test_other_sample_rates_are_resampled(ref):
    r8 = ev._to_rate(ref, SR, 8000)
    assert ev.pesq_wb(r8, r8, sample_rate=8000) > 4.5
    assert ev.mel_distance(r8, r8, sample_rate=8000) < 1e-9


def test_metric_errors(ref):
    with pytest.raises(ev.EvaluationError, match="differ in length"):
        ev.stoi(ref, ref[:-1])
    with pytest.raises(TokenLMError, match="NaN"):
        ev.si_sdr(ref, np.full_like(ref, np.nan))
    with pytest.raises(ev.EvaluationError, match="mono"):
        ev.mel_distance(np.stack([ref, ref]), np.stack([ref, ref]))
    with pytest.raises(ev.EvaluationError, match="no samples"):
        ev.si_sdr([], [])
    with pytest.raises(ev.MetricError, match="PESQ"):
        ev.pesq_wb(np.zeros(SR), np.zeros(SR))  # silent reference
    with pytest.raises(ev.MetricError, match="PESQ: NoUtterancesError"):
        burst = np.r_[np.zeros(SR // 2), np.random.default_rng(0).standard_normal(400), np.zeros(SR // 2)]
        ev.pesq_wb(burst, burst)  # 25 ms of sound: no utterance found
    with pytest.raises(ev.MetricError, match="PESQ: BufferTooShortError"):
        ev.pesq_wb(ref[:2000], ref[:2000])
    with pytest.raises(ev.MetricError, match="PESQ"):
        ev.pesq_wb(ref, np.zeros_like(ref))  # a silent output (the pesq package fails with a ValueError)
    with pytest.raises(ev.MetricError, match="SI-SDR: the estimate is silent"):
        ev.si_sdr(ref, np.full_like(ref, 0.5))
    assert ev.stoi(ref, np.zeros_like(ref)) == 0
    with pytest.raises(ev.MetricError, match="STOI"):
        ev.stoi(ref[:2000], ref[:2000])  # 0.125 s: too few frames
    scores, errors = ev._score(np.zeros(SR), np.zeros(SR))
    assert scores["pesq_wb"] is None and "pesq_wb" in errors


def test_align_and_delay(ref):
    late = np.concatenate([np.zeros(320), ref])  # 20 ms late
    assert ev.estimate_delay(ref, late) == pytest.approx(20, abs=1)
    assert ev.estimate_delay(ref, ref) == 0
    aligned = ev.align(ref.size, late, 320)
    assert aligned.size == ref.size and np.array_equal(aligned, ref)
    assert np.array_equal(ev.align(10, np.arange(4.0)), [0, 1, 2, 3, 0, 0, 0, 0, 0, 0])
    assert np.array_equal(ev.align(3, np.arange(6.0), -1), [0, 0, 1])


# ---- classic codecs ------------------------------------------------------------------------


@pytest.mark.skipif(not HAVE_CODEC2, reason="Debian package codec2 (c2enc/c2dec) not installed")
def test_codec2_roundtrip(ref, tmp_path):
    out, nbytes, payload = ev.codec2_roundtrip(ref, "3200", tmp_path)
    assert abs(out.size - ref.size) < 320  # whole 20 ms frames at 8 kHz
    assert nbytes == payload == pytest.approx(3200 / 8 * ref.size / SR, rel=0.05)
    c = next(c for c in ev.CLASSIC_CODECS if c.name == "codec2-3200")
    sc, _ = ev._score(ref, ev.align(ref.size, out, round(c.delay_ms * SR / 1000)))
    assert sc["stoi"] > 0.5 and sc["mel_distance"] < 3


@pytest.mark.skipif(not HAVE_OPUS, reason="Debian package opus-tools (opusenc/opusdec) not installed")
def test_opus_roundtrip(ref, tmp_path):
    out, nbytes, payload = ev.opus_roundtrip(ref, 6, tmp_path)
    assert out.size == ref.size  # opusdec removes the pre-skip and keeps the length
    assert ev.estimate_delay(ref, out) == 0
    assert 3000 < payload * 8 / (ref.size / SR) < 9000 and nbytes > payload + 100  # headers, Ogg pages
    assert ev.stoi(ref, out) > 0.8


def test_ogg_payload_bytes(tmp_path):
    def page(lacing, flags=0):
        return b"OggS" + bytes([0, flags]) + bytes(20) + bytes([len(lacing), *lacing]) + bytes(sum(lacing))

    # packets: 19 (head), 300 (tags, laced 255 + 45), 10, then 255 + 255 + 0 = 510 split across pages
    path = tmp_path / "x.ogg"
    path.write_bytes(page([19]) + page([255, 45]) + page([10, 255]) + page([255, 0], flags=1))
    assert ev.ogg_payload_bytes(path) == 19 + 300 + 10 + 510
    assert ev.ogg_payload_bytes(path, skip_packets=2) == 520
    path.write_bytes(b"RIFF" + bytes(40))
    with pytest.raises(ev.EvaluationError, match="not an Ogg file"):
        ev.ogg_payload_bytes(path)


def test_missing_tools_are_skipped_with_one_warning(monkeypatch, tiny_codec, tmp_path):
    path = tmp_path / "a.wav"
    sf.write(str(path), speech(1.0), SR)
    monkeypatch.setattr(ev.shutil, "which", lambda name: None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = ev.evaluate_codec([path], tiny_codec, codebooks=[2], progress=False)
    msgs = [str(w.message) for w in caught]
    assert len([m for m in msgs if "codec2" in m]) == 1 and len([m for m in msgs if "opus" in m]) == 1, msgs
    assert [s["system"] for s in res["systems"]] == ["tokenlm-q2"]
    assert {s["system"] for s in res["skipped"]} == set(ev.CLASSIC_NAMES)


# ---- inputs --------------------------------------------------------------------------------


def test_read_manifest(tmp_path):
    d = tmp_path / "corpus"
    (d / "wav").mkdir(parents=True)
    sf.write(str(d / "wav" / "a.wav"), speech(0.5), SR)
    absolute = tmp_path / "b.flac"
    sf.write(str(absolute), speech(0.5), SR)
    m = d / "test.jsonl"
    m.write_text(json.dumps({"audio": "wav/a.wav", "voice": "slt", "text": "hi"}) + "\n\n"
                 + json.dumps({"audio": str(absolute), "id": 7}) + "\n")
    items = ev.read_manifest(m)
    assert items == [ev.Utterance(str(d / "wav" / "a.wav"), "slt", text="hi"),
                     ev.Utterance(str(absolute), "unknown", "7")]
    assert items[0].name == "a" and items[1].name == "7"
    assert len(ev.read_manifest(m, limit=1)) == 1

    bad = d / "bad.jsonl"
    for text, match in [
        ('{"audio": "wav/a.wav"}\n{oops\n', r"bad.jsonl:2: not valid JSON"),
        ('{"voice": "x"}\n', r"bad.jsonl:1: expected an object"),
        ('{"audio": "nope.wav"}\n', r"bad.jsonl:1: audio file .*nope.wav does not exist"),
        ("\n", "no utterances"),
    ]:
        bad.write_text(text)
        with pytest.raises(ev.EvaluationError, match=match):
            ev.read_manifest(bad)
    with pytest.raises(TokenLMError, match="no such manifest"):
        ev.read_manifest(tmp_path / "missing.jsonl")


def test_find_audio(tmp_path):
    for voice in ("rms", "slt"):
        (tmp_path / voice).mkdir()
        sf.write(str(tmp_path / voice / "x.wav"), speech(0.3), SR)
    (tmp_path / "notes.txt").write_text("not audio")
    items = ev.find_audio([tmp_path])
    assert [(Path(u.path).parent.name, u.voice) for u in items] == [("rms", "rms"), ("slt", "slt")]
    assert len(ev.find_audio([tmp_path / "slt" / "x.wav", tmp_path], limit=2)) == 2
    with pytest.raises(ev.EvaluationError, match="no such file"):
        ev.find_audio([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ev.EvaluationError, match="no .wav/.flac files"):
        ev.find_audio([tmp_path / "empty"])


# ---- end to end ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def utterances(tmp_path_factory):
    """Two short utterances in voice folders: 16 kHz 'slt' and 8 kHz 'rms' (flite when installed,
    else the synthetic speech-like signal). The 8 kHz one covers band-limited sources."""
    d = tmp_path_factory.mktemp("utts")
    paths = []
    for k, (voice, text, sr) in enumerate([("slt", "The birch canoe slid on the smooth planks.", 16000),
                                           ("rms", "Glue the sheet to the dark blue background.", 8000)]):
        (d / voice).mkdir()
        path = d / voice / f"u{k}.wav"
        if HAVE_FLITE:
            raw = d / f"raw{k}.wav"
            subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(raw)], check=True, timeout=60)
            x, fsr = sf.read(str(raw))
            x = ev._to_rate(x, fsr, sr)
        else:
            x = speech(2.0, seed=k, sr=sr)
        sf.write(str(path), x, sr)
        paths.append(path)
    return d, paths


def test_rvq_codes_of_a_prefix_equal_a_shorter_encode(tiny_codec, speechlike):
    """evaluate_codec encodes once and decodes prefixes: valid because residual VQ is sequential."""
    full = tiny_codec.encode(speechlike)
    for n in range(1, tiny_codec.num_codebooks):
        assert torch.equal(tiny_codec.encode(speechlike, n), full[:, :n])


@pytest.mark.filterwarnings("ignore:.*not found.*skipping")
def test_evaluate_codec_end_to_end(utterances, tiny_codec, tmp_path):
    d, paths = utterances
    res = ev.evaluate_codec(paths, tiny_codec, progress=False)
    assert set(res) == {"settings", "date", "versions", "systems", "utterances", "failures", "skipped", "timing"}
    names = [s["system"] for s in res["systems"]]
    expect = [f"tokenlm-q{n}" for n in range(1, tiny_codec.num_codebooks + 1)]
    expect += [c.name for c in ev.CLASSIC_CODECS if (HAVE_CODEC2 if c.family == "codec2" else HAVE_OPUS)]
    assert names == expect
    st = res["settings"]
    assert st["num_utterances"] == 2 and st["voices"] == ["rms", "slt"] and st["codebooks"] == [1, 2, 3, 4]
    assert st["metrics"]["mel_distance"]["n_mels"] == 80 and set(st["delay_check_ms"]) == set(names)
    for s in res["systems"]:
        assert set(s["metrics"]) == set(ev.METRICS)
        for m in ev.METRICS:
            assert set(s["metrics"][m]) == {"mean", "ci95", "std", "n"}
            assert s["metrics"][m]["n"] + sum(
                f["system"] == s["system"] and f["metric"] == m for f in res["failures"]) == 2
        assert set(s["per_voice"]) == {"rms", "slt"} and s["per_voice"]["slt"]["n"] == 1
        if s["family"] == "tokenlm":
            assert s["kbps"] == pytest.approx(tiny_codec.bitrate(s["codebooks"]) / 1000)
            assert s["measured_kbps"] == s["payload_kbps"] == pytest.approx(s["kbps"], rel=0.1)  # frame padding
    if HAVE_CODEC2:
        c2 = next(s for s in res["systems"] if s["system"] == "codec2-3200")
        assert c2["metrics"]["stoi"]["mean"] > 0.5 and c2["measured_kbps"] == pytest.approx(3.2, rel=0.05)
    if HAVE_OPUS:
        op = next(s for s in res["systems"] if s["system"] == "opus-6")
        assert op["kbps"] == 6 and op["measured_kbps"] > op["payload_kbps"] > 3
        assert op["metrics"]["stoi"]["mean"] > 0.7
    assert [u["voice"] for u in res["utterances"]] == ["slt", "rms"]
    assert set(res["utterances"][0]["scores"]) == set(names)
    assert res["versions"]["pystoi"] and res["versions"]["pesq"]

    files = ev.write_report(res, tmp_path / "out")
    assert files["png"].read_bytes()[:8] == PNG_MAGIC
    assert json.loads(files["json"].read_text())["settings"]["num_utterances"] == 2
    table = files["md"].read_text()
    assert "| system | kbps | measured kbps |" in table and "95% CI" in table
    assert len([ln for ln in table.splitlines() if ln.startswith("| ")]) == 1 + len(names)

    with pytest.raises(ev.EvaluationError, match="codebook counts must be 1..4"):
        ev.evaluate_codec(paths, tiny_codec, codebooks=[5], progress=False)
    with pytest.raises(ev.EvaluationError, match="unknown classic"):
        ev.evaluate_codec(paths, tiny_codec, classic=["mp3"], progress=False)


def run_cli(*args):
    env = {k: v for k, v in os.environ.items() if k not in ("TOKENLM_DEBUG", "PYTHONWARNINGS")}
    return subprocess.run([sys.executable, "-m", "tokenlm.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300)


def test_intelligibility_scores_every_system_and_the_original(utterances, tiny_codec, tmp_path, monkeypatch):
    import tokenlm.lm.evaluation as lme

    class Judge:  # hears the first two words of whatever it is given, whatever the audio
        calls = 0

        def transcribe(self, wav):
            Judge.calls += 1
            assert wav.dtype == torch.float32 and wav.dim() == 1 and wav.numel() > 0
            return "one two"

    monkeypatch.setattr(lme, "Pocketsphinx", Judge)
    d, paths = utterances
    utts = [ev.Utterance(p, "slt", text="one two three four") for p in paths]
    res = ev.evaluate_codec(utts, tiny_codec, codebooks=[1, 2], classic=[], progress=False, intelligibility=True)
    assert res["settings"]["wer_original"] == pytest.approx(0.5)
    assert [s["wer"] for s in res["systems"]] == [pytest.approx(0.5)] * 2
    assert Judge.calls == len(paths) * 3  # the original and each system, per utterance
    assert res["utterances"][0]["heard"] == {"original": "one two", "tokenlm-q1": "one two", "tokenlm-q2": "one two"}
    table = ev.format_table(res)
    assert "| WER ↓ |" in table and "| original (no codec) |" in table and "| 50.0% |" in table
    with pytest.raises(ev.EvaluationError, match="needs a transcript"):
        ev.evaluate_codec(paths, tiny_codec, codebooks=[1], classic=[], progress=False, intelligibility=True)
    plain = ev.format_table(ev.evaluate_codec(utts, tiny_codec, codebooks=[1], classic=[], progress=False))
    assert "WER" not in plain


def test_cli_eval_codec(utterances, tmp_path):
    d, paths = utterances
    manifest = d / "test.jsonl"
    manifest.write_text("".join(json.dumps({"audio": str(p.relative_to(d)), "voice": p.parent.name}) + "\n"
                                for p in paths))
    out = tmp_path / "report"
    proc = run_cli("eval-codec", "--manifest", manifest, "--codec", "tiny", "--codebooks", "1", "4",
                   "--out-dir", out)
    assert proc.returncode == 0, proc.stderr
    assert "| system | kbps |" in proc.stdout and "Traceback" not in proc.stderr
    assert (out / "codec_eval.png").read_bytes()[:8] == PNG_MAGIC
    res = json.loads((out / "codec_eval.json").read_text())
    names = [s["system"] for s in res["systems"]]
    assert names[:2] == ["tokenlm-q1", "tokenlm-q4"]
    assert ("codec2-700C" in names) == HAVE_CODEC2 and ("opus-6" in names) == HAVE_OPUS
    assert res["settings"]["codec_source"] == "tiny" and res["settings"]["inputs"]["manifest"] == str(manifest)
    assert (out / "codec_eval.md").read_text() in proc.stdout


def test_cli_eval_codec_errors(utterances, tmp_path):
    d, paths = utterances
    proc = run_cli("eval-codec", "--manifest", tmp_path / "none.jsonl", "--codec", "tiny")
    assert proc.returncode == 1 and proc.stderr.strip().startswith("tokenlm: error:") and "none.jsonl" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = run_cli("eval-codec", "--audio", paths[0], "--codec", "tiny", "--codebooks", "9",
                   "--out-dir", tmp_path / "x")
    assert proc.returncode == 1 and "--codebooks must be 1..4" in proc.stderr
    assert not (tmp_path / "x").exists()
    proc = run_cli("eval-codec", "--codec", "tiny")  # neither --manifest nor --audio: usage error
    assert proc.returncode == 2


def test_recipe_script(utterances, tmp_path, capsys):
    d, paths = utterances
    spec = importlib.util.spec_from_file_location("eval_codec_recipe", ROOT / "recipes" / "eval_codec.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rc = mod.main(["--audio", str(d), "--limit", "1", "--codec", "tiny", "--codebooks", "2", "--no-classic",
                   "--out-dir", str(tmp_path / "r")])
    assert rc == 0
    res = json.loads((tmp_path / "r" / "codec_eval.json").read_text())
    assert [s["system"] for s in res["systems"]] == ["tokenlm-q2"] and res["settings"]["num_utterances"] == 1
    assert "| system | kbps |" in capsys.readouterr().out
    assert mod.main(["--audio", str(tmp_path / "missing"), "--codec", "tiny"]) == 1
    assert "eval_codec: error:" in capsys.readouterr().err


def test_ci_half_width():
    s = ev._summary([1.0, 2.0, 3.0, None])
    assert s["n"] == 3 and s["mean"] == 2.0 and s["ci95"] == pytest.approx(4.303 * 1 / math.sqrt(3), rel=1e-3)
    assert ev._summary([None])["mean"] is None and ev._summary([5.0])["ci95"] is None
