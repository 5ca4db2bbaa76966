import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("diagnose_codec", ROOT / "recipes" / "diagnose_codec.py")
diagnose_codec = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(diagnose_codec)


def voiced(seconds=1.5, sr=16000, f0=130.0):
    t = np.arange(int(seconds * sr)) / sr
    env = np.clip(np.sin(2 * math.pi * 1.5 * t), 0, None)  # syllables with silence between
    wav = sum(np.sin(2 * math.pi * k * f0 * t) / k for k in range(1, 30)) * env * 0.1
    wav[: sr // 5] = 0.0  # leading digital silence
    return wav.astype(np.float32)


def test_identity_scores_perfectly_and_noise_shows_up_as_bias_and_silence_level():
    ref = voiced()
    same = diagnose_codec.diagnose_pair(ref, ref.copy())
    assert same["codec"]["stoi"] > 0.99 and same["original_magnitude_codec_phase"]["stoi"] > 0.99
    assert abs(same["silence_db"]) < 1e-6 and all(abs(v) < 1e-3 for v in same["band_bias_db"].values())
    noisy = ref + 0.003 * np.random.default_rng(0).standard_normal(ref.shape).astype(np.float32)
    d = diagnose_codec.diagnose_pair(ref, noisy)
    assert d["silence_db"] > 20 and d["silence_level_dbfs"] < -40
    assert d["band_bias_db"]["1200-2400"] > 1.0  # noise fills the valleys between harmonics
    # the phase is the original's: putting the original phase back changes little
    assert abs(d["codec_magnitude_original_phase"]["stoi"] - d["codec"]["stoi"]) < 0.02
    assert d["codec"]["pesq_wb"] < same["codec"]["pesq_wb"]


def test_cli_runs_on_the_bundled_codec_and_fails_in_one_line(tmp_path):
    sf.write(tmp_path / "a.wav", voiced(), 16000)
    (tmp_path / "m.jsonl").write_text(json.dumps({"audio": "a.wav", "voice": "synth"}) + "\n")
    out = tmp_path / "d.json"
    r = subprocess.run([sys.executable, str(ROOT / "recipes" / "diagnose_codec.py"), "--manifest",
                        str(tmp_path / "m.jsonl"), "--threads", "1", "--json", str(out)],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "original magnitude + codec phase" in r.stdout
    s = json.loads(out.read_text())
    assert s["utterances"] == 1 and 0 < s["codec"]["stoi"] <= 1 and set(s["band_bias_db"]) == {
        f"{lo}-{hi}" for lo, hi in diagnose_codec.BANDS}
    r = subprocess.run([sys.executable, str(ROOT / "recipes" / "diagnose_codec.py"), "--manifest",
                        str(tmp_path / "missing.jsonl")], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 1 and "no such manifest" in r.stderr and "Traceback" not in r.stderr


def test_a_judge_hears_every_signal_and_gives_word_error_rates(tmp_path):
    import pytest
    import torch

    from tokenlm.errors import TokenLMError
    from tokenlm.evaluation import Utterance

    class Judge:  # hears the original right and every processed signal as one word short
        def transcribe(self, wav):
            assert isinstance(wav, torch.Tensor) and wav.dtype == torch.float32
            return "one two three" if wav.numpy().tobytes() == ref.tobytes() else "one two"

    class Identity(torch.nn.Module):  # a "codec" that returns its input
        sample_rate, channels = 16000, 1

        def encode(self, x, n=None):
            return x

        def decode(self, codes):
            return codes

    ref = voiced()
    sf.write(tmp_path / "a.wav", ref, 16000, subtype="FLOAT")
    u = Utterance(str(tmp_path / "a.wav"), "synth", text="One, two three!")
    s = diagnose_codec.diagnose([u], Identity(), progress=False, judge=Judge())
    assert s["wer"]["original"] == 0.0
    assert s["wer"]["codec"] == pytest.approx(0.0)  # the identity codec: the same bytes as the original
    assert s["wer"]["original_magnitude_codec_phase"] == pytest.approx(1 / 3)  # resynthesised: not bit-equal
    report = diagnose_codec.format_report(s)
    assert "| original | | | 0.0% |" in report and "33.3% |" in report
    with pytest.raises(TokenLMError, match="needs a transcript"):
        diagnose_codec.diagnose([Utterance(str(tmp_path / "a.wav"))], Identity(), progress=False, judge=Judge())
