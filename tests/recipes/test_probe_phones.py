import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tokenlm.data import tts

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("probe_phones", ROOT / "recipes" / "probe_phones.py")
probe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(probe)


def test_frame_labels_take_the_phone_under_each_frame_centre():
    phones = [{"phone": "pau", "start": 0.0, "end": 0.05}, {"phone": "k", "start": 0.05, "end": 0.09},
              {"phone": "ae", "start": 0.09, "end": 0.21}, {"phone": "t", "start": 0.21, "end": 0.3}]
    # 25 Hz frames: centres at 0.02, 0.06, 0.10, 0.14, 0.18, 0.22, 0.26, 0.30, 0.34
    assert probe.frame_labels(phones, 9, 25.0, "flite") == [
        None, "flite:k", "flite:ae", "flite:ae", "flite:ae", "flite:t", "flite:t", None, None]
    assert probe.frame_labels([{"phone": "_:", "start": 0, "end": 1}], 2, 25.0, "espeak-ng") == [None, None]


def test_context_stacks_neighbours_with_repeated_edges():
    x = torch.arange(4.0)[:, None]  # [F=4, D=1]
    y = probe.with_context(x, 1)
    assert y.tolist() == [[0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 3]]


def test_probe_separates_separable_frames_and_not_noise():
    g = torch.Generator().manual_seed(0)
    ys = [torch.randint(0, 3, (200,), generator=g) for _ in range(10)]
    clean = [torch.nn.functional.one_hot(y, 3).float() + 0.1 * torch.randn(200, 3, generator=g) for y in ys]
    noise = [torch.randn(200, 3, generator=g) for _ in ys]
    assert probe.train_probe(clean, ys, [0, 5], 3, epochs=150) > 0.95  # 1,600 frames: 2 steps an epoch
    assert probe.train_probe(noise, ys, [0, 5], 3, epochs=150) < 0.5


@pytest.mark.skipif(not (tts.engine_available("flite") and tts.engine_available("espeak-ng")),
                    reason="needs libflite1 and libespeak-ng1 (make speech-deps)")
def test_cli_on_a_corpus_with_phones(tmp_path):
    from tokenlm.data.corpus import build_corpus

    sentences = [f"The {w} sat on a mat near the open window today." for w in
                 ("cat", "dog", "bird", "fox", "man", "child", "horse", "goat", "duck", "mouse", "frog", "pig")]
    build_corpus(tmp_path / "c", num_utterances=14, seed=1, workers=0, valid_fraction=0.01, test_fraction=0.01,
                 sentences=sentences, flite_share=0.5, progress=False, phones=True)
    out = tmp_path / "probe.json"
    r = subprocess.run([sys.executable, str(ROOT / "recipes" / "probe_phones.py"), "--manifest",
                        str(tmp_path / "c" / "train.jsonl"), "--codec", "tiny", "--epochs", "2", "--threads", "1",
                        "--json", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "| log-mel of the original |" in r.stdout and "| tiny: sum of" in r.stdout
    res = json.loads(out.read_text())
    assert res["utterances"] >= 10 and res["classes"] > 10
    assert all(0.0 <= a <= 1.0 for a in res["accuracy"].values()) and len(res["accuracy"]) == 4
    no_phones = tmp_path / "plain.jsonl"
    no_phones.write_text("".join(json.dumps({k: v for k, v in json.loads(line).items() if k != "phones"}) + "\n"
                                 for line in (tmp_path / "c" / "train.jsonl").read_text().splitlines()))
    r = subprocess.run([sys.executable, str(ROOT / "recipes" / "probe_phones.py"), "--manifest", str(no_phones)],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 1 and "--phones" in r.stderr and "Traceback" not in r.stderr
