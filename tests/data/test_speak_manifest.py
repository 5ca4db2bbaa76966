import json
import subprocess
import sys
from pathlib import Path

import pytest

from tokenlm.data.manifest import read_manifest, write_manifest
from tokenlm.data.tts import engine_available

ROOT = Path(__file__).resolve().parents[2]
CMD = [sys.executable, str(ROOT / "recipes" / "speak_manifest.py")]


def _manifest(tmp_path: Path, texts=("the cat sat down", "a quiet evening", "it rained all day")) -> Path:
    import torch

    from tokenlm.audio import save_audio

    entries = []
    for i, text in enumerate(texts):
        save_audio(tmp_path / f"src{i}.wav", torch.zeros(1, 1600), 16000)
        entries.append({"id": f"t{i}", "audio": str(tmp_path / f"src{i}.wav"), "text": text, "voice": "slt",
                        "engine": "flite", "duration": 0.1, "sample_rate": 16000, "split": "test"})
    write_manifest(tmp_path / "test.jsonl", entries)
    return tmp_path / "test.jsonl"


@pytest.mark.skipif(not engine_available("flite"), reason="needs libflite1 (make speech-deps)")
def test_speak_manifest_speaks_each_sentence_in_turn(tmp_path):
    src = _manifest(tmp_path)
    r = subprocess.run(CMD + ["--manifest", str(src), "--voices", "kal16,awb", "--limit", "3", "--out",
                              str(tmp_path / "seen"), "--no-progress"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    new = read_manifest(tmp_path / "seen" / "test.jsonl")
    assert [e["voice"] for e in new] == ["kal16", "awb", "kal16"]
    assert [e["source"] for e in new] == ["t0", "t1", "t2"] and new[0]["id"] == "t0+kal16"
    for e, text in zip(new, ["the cat sat down", "a quiet evening", "it rained all day"]):
        assert e["text"] == text and [w["word"] for w in e["words"]] == text.split()
        assert e["duration"] > 0.5 and Path(e["audio"]).is_file()
    assert json.loads((tmp_path / "seen" / "test.jsonl").read_text().splitlines()[0])["engine"] == "flite"


def test_speak_manifest_errors_are_one_line(tmp_path):
    src = _manifest(tmp_path)
    r = subprocess.run(CMD + ["--manifest", str(tmp_path / "missing.jsonl"), "--voices", "kal16", "--out",
                              str(tmp_path / "x")], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "no such manifest" in r.stderr
    if engine_available("flite"):
        r = subprocess.run(CMD + ["--manifest", str(src), "--voices", "nobody", "--out", str(tmp_path / "x")],
                           capture_output=True, text=True, cwd=ROOT)
        assert r.returncode == 1 and r.stderr.count("\n") == 1 and "no voice 'nobody'" in r.stderr
    r = subprocess.run(CMD + ["--manifest", str(src), "--voices", ",", "--out", str(tmp_path / "x")],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "usage:" in r.stderr


@pytest.mark.skipif(not engine_available("flite"), reason="needs libflite1 (make speech-deps)")
def test_speak_manifest_skip_errors_leaves_out_unspeakable_sentences(tmp_path):
    # flite speaks no word for 'AM.'
    src = _manifest(tmp_path, ("the cat sat down", "Please wake me at six AM.", "it rained all day"))
    base = CMD + ["--manifest", str(src), "--voices", "kal16", "--no-progress"]
    r = subprocess.run(base + ["--out", str(tmp_path / "strict")], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "'AM.'" in r.stderr
    assert not (tmp_path / "strict" / "test.jsonl").exists()
    r = subprocess.run(base + ["--out", str(tmp_path / "lenient"), "--skip-errors", "--name", "train.jsonl"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "1 sentences the engine could not speak" in r.stdout
    new = read_manifest(tmp_path / "lenient" / "train.jsonl")
    assert [e["source"] for e in new] == ["t0", "t2"] and {e["split"] for e in new} == {"test"}


@pytest.mark.skipif(not engine_available("flite"), reason="needs libflite1 (make speech-deps)")
def test_speak_manifest_draws_rate_and_pitch_per_utterance_from_the_seed(tmp_path):
    src = _manifest(tmp_path)
    base = CMD + ["--manifest", str(src), "--voices", "kal16", "--rate", "0.8", "1.25", "--pitch", "0.9", "1.1",
                  "--no-progress"]
    got = {}
    for name, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        r = subprocess.run(base + ["--seed", seed, "--out", str(tmp_path / name)], capture_output=True, text=True,
                           cwd=ROOT)
        assert r.returncode == 0, r.stderr
        got[name] = read_manifest(tmp_path / name / "test.jsonl")
    a, b, c = ([(e["rate"], e["pitch"], e["duration"]) for e in got[k]] for k in "abc")
    assert a == b and a != c  # the same seed speaks the same way
    assert all(0.8 <= r <= 1.25 and 0.9 <= p <= 1.1 for r, p, _ in a)
    assert len({r for r, _, _ in a}) == 3
    r = subprocess.run(base[:6] + ["--rate", "1.2", "0.8", "--out", str(tmp_path / "x")], capture_output=True,
                       text=True, cwd=ROOT)
    assert r.returncode == 2 and "--rate needs 0 < LO <= HI" in r.stderr
