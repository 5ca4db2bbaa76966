"""The word n-gram language model (tokenlm.lm.wordlm) and its recipe."""

import gzip
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from tokenlm.errors import CheckpointError
from tokenlm.lm.wordlm import EOS, UNK, NGramLM

ROOT = Path(__file__).resolve().parents[2]
WORDS = "the cat dog sat on a mat ran fast and slow big red".split()


def sentences(n=300, seed=0):
    rng = random.Random(seed)
    # some structure for the model to find: "the" is usually followed by an animal
    out = []
    for _ in range(n):
        ws = []
        for _ in range(rng.randint(3, 9)):
            ws.append(rng.choice(["cat", "dog"]) if ws and ws[-1] == "the" and rng.random() < 0.9
                      else rng.choice(WORDS))
        out.append(" ".join(ws).capitalize() + ".")
    return out


@pytest.mark.parametrize("min_count", [(1, 1, 1), (1, 1, 2), (1, 2, 3)])
def test_every_context_is_a_distribution(min_count):
    lm = NGramLM.train(sentences(), 3, min_count=min_count)
    vocab = sorted(lm.vocab - {"<s>"})
    assert EOS in vocab and UNK in vocab
    for hist in [(), ("<s>",), ("the",), ("the", "cat"), ("unseen", "cat"), ("red", "red"), ("<s>", "the")]:
        total = sum(10 ** lm.log10prob(w, hist) for w in vocab)
        assert total == pytest.approx(1.0, abs=1e-6), hist


def test_it_learns_the_text_and_prefers_seen_continuations():
    lm = NGramLM.train(sentences(), 3)
    assert lm.logprob("cat", ["the"]) > lm.logprob("mat", ["the"]) + 1.0
    assert lm.logprob("zebra", ["the"]) == lm.logprob(UNK, ["the"]) < lm.logprob("mat", ["the"])
    held_out = sentences(100, seed=1)
    shuffled = [" ".join(random.Random(i).sample(s.split(), len(s.split()))) for i, s in enumerate(held_out)]
    assert lm.perplexity(held_out) < lm.perplexity(shuffled)


@pytest.mark.parametrize("name", ["lm.arpa", "lm.arpa.gz"])
def test_arpa_round_trip(tmp_path, name):
    lm = NGramLM.train(sentences(), 3)
    path = lm.save(tmp_path / name)
    back = NGramLM.load(path)
    assert back.order == 3 and back.probs.keys() == lm.probs.keys()
    for hist, w in [(("the",), "cat"), (("a", "big"), "dog"), (("zz",), "mat"), ((), EOS)]:
        assert back.log10prob(w, hist) == pytest.approx(lm.log10prob(w, hist), abs=1e-5)
    if name.endswith(".gz"):  # the same model writes the same bytes
        assert lm.save(tmp_path / "again.arpa.gz").read_bytes() == path.read_bytes()


def test_broken_files_raise_a_clear_error(tmp_path):
    lm = NGramLM.train(sentences(), 2)
    text = gzip.decompress(lm.save(tmp_path / "ok.arpa.gz").read_bytes()).decode()
    (tmp_path / "cut.arpa").write_text(text[: len(text) // 2])
    (tmp_path / "noise.arpa").write_bytes(b"\x00\x01 not a language model")
    (tmp_path / "bad.arpa.gz").write_bytes(gzip.compress(text.encode())[:200])
    for name, why in [("cut.arpa", "truncated"), ("noise.arpa", "not an ARPA"), ("bad.arpa.gz", "cannot read"),
                      ("missing.arpa", "cannot read")]:
        with pytest.raises(CheckpointError, match=why):
            NGramLM.load(tmp_path / name)
    with pytest.raises(ValueError):
        NGramLM.train(["", "  "], 3)


def test_recipe_trains_from_text_and_manifests(tmp_path):
    (tmp_path / "text.txt").write_text("\n".join(sentences()))
    rows = [{"id": f"v{i}", "audio": "x.wav", "text": s, "voice": "v", "engine": "user", "split": "valid",
             "duration": 1.0, "sample_rate": 16000} for i, s in enumerate(sentences(5, 2))]
    (tmp_path / "valid.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    r = subprocess.run([sys.executable, str(ROOT / "recipes" / "train_word_lm.py"), "--text", str(tmp_path / "text.txt"),
                        "--out", str(tmp_path / "w.arpa.gz"), "--valid", str(tmp_path / "valid.jsonl")],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "3-grams" in r.stdout and "perplexity" in r.stdout
    assert NGramLM.load(tmp_path / "w.arpa.gz").order == 3
    r = subprocess.run([sys.executable, str(ROOT / "recipes" / "train_word_lm.py"), "--out", str(tmp_path / "x.arpa")],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 1 and "error: no text" in r.stderr and "Traceback" not in r.stderr
