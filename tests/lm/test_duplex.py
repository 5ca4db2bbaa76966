"""Full duplex end to end on a tiny scale: dialogue banks from the question grammar -> train_lm
--task duplex -> `tokenlm duplex` (stereo out, timeline) -> eval_duplex."""

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from tokenlm.data import tts

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "recipes"
TOKENIZER = ROOT / "tokenlm" / "lm" / "pretrained" / "duplex" / "tokenizer.model"
needs_engines = pytest.mark.skipif(not (tts.engine_available("espeak-ng") and tts.engine_available("flite")),
                                   reason="needs libespeak-ng1 and libflite1 (make speech-deps)")


def run(cmd, timeout=300):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=timeout, input="")


@pytest.fixture(scope="module")
def banks(tmp_path_factory):
    d = tmp_path_factory.mktemp("duplex")
    r = run([sys.executable, RECIPES / "build_duplex_data.py", "--out", d, "--tokenizer", TOKENIZER, "--codec", "tiny",
             "--variants", "1", "1", "1", "--dialogues", "6", "2", "2", "--seconds", "8", "--answer-variants", "1",
             "--threads", "1"])
    assert r.returncode == 0, r.stderr[-2000:]
    return d


def test_qa_grammar_and_streams():
    from tokenlm.lm.duplex import duplex_streams, qa_pairs

    pairs = qa_pairs()
    assert len(pairs) == len({q for q, _ in pairs}) == 46
    assert ("what is two plus three", "five") in pairs
    s = duplex_streams(1000, 1024, 4)
    assert [x.name for x in s] == ["text", "audio_0", "audio_1", "audio_2", "audio_3", "in_0", "in_1", "in_2", "in_3"]
    assert s.delays == [0, 2, 3, 3, 3, 0, 0, 0, 0] and s.generated == [0, 1, 2, 3, 4]


@needs_engines
def test_dialogues_hold_answers_after_questions_and_stop_on_barge_in(banks):
    from tokenlm.lm.duplex import DialogueBank, DialogueSampler, duplex_streams
    from tokenlm.lm.tokenizer import TextTokenizer

    bank = DialogueBank(banks / "train")
    tok = TextTokenizer.load(TOKENIZER)
    streams = duplex_streams(tok.vocab_size, bank.meta["codebook_size"], 4)
    sampler = DialogueSampler(bank, streams, frames=100)
    for i in range(len(bank)):
        x = sampler.dialogue(i)
        assert x.shape == (9, 200)
        text = x[0].tolist()
        said = tok.decode([t for t in text if t < tok.vocab_size]).split()
        expected = []
        for turn in bank.scripts[i]:
            assert turn.a_start > turn.q_end  # the model answers after the question
            words = bank.pairs[turn.pair][1].split()
            placed = [w for w in bank.answer_words[turn.answer] if turn.a0 + w["start"] + len(w["pieces"]) <= 200]
            if turn.cut is not None:
                placed = [w for w in placed if turn.a0 + w["start"] + len(w["pieces"]) <= turn.cut]
                assert (x[1, turn.cut:turn.cut + 3] == bank.silence[0]).all()  # its audio stops at the cut
            expected += words[: len(placed)]
        assert said == expected
    delayed, valid = sampler.batch(random.Random(0), 3)
    assert delayed.shape == (3, 9, 103) and valid[:, 1, :2].sum() == 0


@needs_engines
def test_train_duplex_then_cli_and_eval(banks, tmp_path):
    out = tmp_path / "run"
    r = run([sys.executable, RECIPES / "train_lm.py", "--task", "duplex", "--train", banks / "train", "--valid",
             banks / "valid", "--tokenizer", TOKENIZER, "--out", out, "--preset", "tiny", "--batch-size", "2",
             "--max-frames", "60", "--steps", "4", "--warmup", "1", "--eval-every", "2", "--eval-items", "2",
             "--log-every", "1", "--threads", "1"])
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert any("valid_loss/text" in x for x in rows) and rows[-1]["step"] == 4
    dialogue = json.loads((banks / "test" / "dialogues.jsonl").read_text().splitlines()[0])
    wav = banks / "test" / dialogue["audio"]
    res = run([sys.executable, "-m", "tokenlm.cli", "duplex", wav, "-o", tmp_path / "both.wav", "--model",
               out / "model", "--json", "--tail", "0.4"])
    assert res.returncode == 0, res.stderr[-2000:]
    timeline = json.loads(res.stdout)
    data, sr = sf.read(tmp_path / "both.wav")
    assert sr == 16000 and data.shape[1] == 2 and abs(data.shape[0] / sr - (8.0 + 0.4)) < 0.05
    assert timeline["channels"] == ["user", "model"] and isinstance(timeline["words"], list)
    bad = run([sys.executable, "-m", "tokenlm.cli", "duplex", tmp_path / "missing.wav", "-o", tmp_path / "x.wav",
               "--model", out / "model"])
    assert bad.returncode != 0 and bad.stderr.count("\n") == 1 and "missing.wav" in bad.stderr
    ev = run([sys.executable, RECIPES / "eval_duplex.py", "--model", out / "model", "--data", banks / "test",
              "--out-dir", tmp_path / "eval", "--asr", "", "--limit", "1"])
    assert ev.returncode == 0, ev.stderr[-2000:]
    result = json.loads((tmp_path / "eval" / "duplex_eval.json").read_text())
    assert result["dialogues"] == 1 and set(result["wer"]) == {"said", "pocketsphinx"}
