"""The codec recipe runs, resumes after kill -9 exactly, and trains with two processes over gloo."""

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "train_codec.py"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Six short synthetic 'utterances' (harmonic glides + noise), most with made-up phone timings,
    and train/valid manifests."""
    d = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    lines = []
    for i in range(6):
        n = int(16000 * (0.6 + 0.3 * i))
        t = np.arange(n) / 16000
        f0 = 100 + 40 * i + 30 * np.sin(2 * np.pi * 2 * t)
        wav = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / 16000) / k for k in range(1, 6)) * 0.2
        wav = (wav + 0.01 * rng.standard_normal(n)).astype(np.float32)
        (d / "audio").mkdir(exist_ok=True)
        sf.write(d / "audio" / f"u{i}.wav", wav, 16000, subtype="PCM_16")
        lines.append({"id": f"u{i}", "audio": f"audio/u{i}.wav", "text": "", "words": [], "voice": "synth",
                      "engine": "user", "duration": n / 16000, "sample_rate": 16000,
                      "split": "train" if i < 4 else "valid"})
        if i != 3:  # phone timings (--phone-weight), one training utterance without
            names = ["pau"] + ["a", "b", "c"][i % 3:] * 20
            lines[-1]["phones"] = [{"phone": p, "start": round(0.1 * k, 3), "end": round(0.1 * k + 0.1, 3)}
                                   for k, p in enumerate(names[: int(n / 1600)])]
    for split in ("train", "valid"):
        (d / f"{split}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines if x["split"] == split))
    return d


def args(corpus, out, *extra):
    return ["--train", str(corpus / "train.jsonl"), "--valid", str(corpus / "valid.jsonl"), "--out", str(out),
            "--preset", "tiny", "--batch-size", "2", "--segment-seconds", "0.4", "--workers", "0",
            "--adv-start", "1", "--warmup", "2", "--eval-every", "3", "--eval-items", "2", "--log-every", "1",
            "--threads", "1", *extra]


def run(cmd, **kw):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, **kw)


def weights(out):
    return load_file(str(out / "model" / "model.safetensors"))


def test_three_steps_then_the_model_loads(corpus, tmp_path):
    out = tmp_path / "run"
    r = run([sys.executable, str(RECIPE), *args(corpus, out, "--steps", "3", "--save-every", "3")])
    assert r.returncode == 0, r.stderr[-2000:]
    import tokenlm.codecs as tc

    codec = tc.load(out / "model")
    assert codec.config.num_codebooks == 4
    wav = torch.randn(1, 1, 3 * codec.hop_length) * 0.1
    assert codec.decode(codec.encode(wav)).shape == wav.shape
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in log if "loss" in x] == [1, 2, 3]
    assert any("d_loss" in x for x in log) and any("valid_mel" in x for x in log)
    assert "train_codec.py" in (out / "command.txt").read_text()
    assert (out / "checkpoints" / "latest").read_text() == "step_0000003"
    # a second start without --resume refuses to overwrite the run
    r = run([sys.executable, str(RECIPE), *args(corpus, out, "--steps", "3")])
    assert r.returncode != 0 and "--resume" in r.stderr
    # fine-tuning starts from a trained codec's weights, here an inference-only float16 export
    small = tc.save_codec(codec, tmp_path / "small", inference_only=True, dtype=torch.float16)
    r = run([sys.executable, str(RECIPE), *args(corpus, tmp_path / "tuned", "--steps", "2", "--save-every", "2",
                                                "--init-from", str(small), "--adv-weight", "0")])
    assert r.returncode == 0, r.stderr[-2000:]
    tuned = tc.load(tmp_path / "tuned" / "model")
    assert tuned.config.num_codebooks == codec.config.num_codebooks
    moved = [k for k, v in tuned.state_dict().items() if not torch.equal(v, codec.state_dict()[k].to(v.dtype))]
    assert moved, "fine-tuning changed nothing"
    # --decoder-only moves the decoder alone: the codes keep their meaning (same token fingerprint)
    r = run([sys.executable, str(RECIPE), *args(corpus, tmp_path / "dec", "--steps", "2", "--save-every", "2",
                                                "--init-from", str(small), "--adv-weight", "0", "--decoder-only",
                                                "--stft-weight", "1", "--decoder-codebooks", "3")])
    assert r.returncode == 0, r.stderr[-2000:]
    log = [json.loads(x) for x in (tmp_path / "dec" / "log.jsonl").read_text().splitlines()]
    assert all(x["stft"] > 0 and x["codebooks"] == 3 for x in log if "loss" in x)  # every step at 3 codebooks
    r = run([sys.executable, str(RECIPE), *args(corpus, tmp_path / "dec5", "--steps", "2", "--init-from", str(small),
                                                "--decoder-only", "--decoder-codebooks", "5")])
    assert r.returncode != 0 and "counts 1..4 codebooks, got 5" in r.stderr and "Traceback" not in r.stderr
    dec = tc.load(tmp_path / "dec" / "model")
    base = tc.load(small)
    moved = {k.split(".")[0] for k, v in dec.state_dict().items()
             if k in base.state_dict() and not torch.equal(v, base.state_dict()[k])}
    assert moved == {"decoder"}
    assert dec.token_fingerprint == base.token_fingerprint and dec.fingerprint != base.fingerprint
    wav = torch.randn(1, 1, 4 * codec.hop_length) * 0.1
    assert torch.equal(dec.encode(wav), base.encode(wav))
    # a new, larger decoder on the same codes; other fields cannot change in a trained codec
    r = run([sys.executable, str(RECIPE), *args(corpus, tmp_path / "big", "--steps", "2", "--save-every", "2",
                                                "--init-from", str(small), "--adv-weight", "0", "--decoder-only",
                                                "--set", "decoder_base_channels=16")])
    assert r.returncode == 0, r.stderr[-2000:]
    assert "a new decoder" in r.stderr and "from scratch" in r.stderr
    big = tc.load(tmp_path / "big" / "model")
    assert big.config.decoder_base_channels == 16 and big.token_fingerprint == base.token_fingerprint
    assert torch.equal(big.encode(wav), base.encode(wav)) and big.decode(big.encode(wav)).shape == wav.shape
    r = run([sys.executable, str(RECIPE), *args(corpus, tmp_path / "bad", "--steps", "2", "--init-from", str(small),
                                                "--set", "num_codebooks=2")])
    assert r.returncode != 0 and "only the decoder's size" in r.stderr and "Traceback" not in r.stderr


def test_kill_9_then_resume_matches_an_uninterrupted_run(corpus, tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    common = ("--steps", "6", "--save-every", "2")
    r = run([sys.executable, str(RECIPE), *args(corpus, straight, *common)])
    assert r.returncode == 0, r.stderr[-2000:]
    r = run([sys.executable, str(RECIPE), *args(corpus, killed, *common, "--kill-at-step", "5")])
    assert r.returncode == -signal.SIGKILL
    assert (killed / "checkpoints" / "latest").read_text() == "step_0000004"
    r = run([sys.executable, str(RECIPE), *args(corpus, killed, *common, "--resume")])
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resumed from" in r.stderr
    rows = [json.loads(x) for x in (killed / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in rows if "loss" in x] == [1, 2, 3, 4, 5, 6]  # the killed run's step 5 is gone
    a, b = weights(straight), weights(killed)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


def test_two_cpu_processes_over_gloo(corpus, tmp_path):
    out = tmp_path / "ddp"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(port), str(RECIPE), *args(corpus, out, "--steps", "3", "--save-every", "3",
                                                                "--cpu", "--phone-weight", "0.5")]
    r = run(cmd, input="")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "processes=2" in (out / "command.txt").read_text()
    assert (out / "model" / "model.safetensors").exists()
    assert any("phone_ce" in json.loads(x) for x in (out / "log.jsonl").read_text().splitlines())


def test_phone_supervision_of_codebook_0(corpus, tmp_path):
    """--phone-weight: a phone classifier on codebook 0 (logged, validated, resumed exactly); not in the codec."""
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    common = ("--steps", "4", "--save-every", "2", "--adv-weight", "0", "--phone-weight", "1")
    r = run([sys.executable, str(RECIPE), *args(corpus, straight, *common)])
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [json.loads(x) for x in (straight / "log.jsonl").read_text().splitlines()]
    assert all(x["phone_ce"] > 0 and 0 <= x["phone_acc"] <= 1 for x in rows if "loss" in x)
    assert any(0 <= x.get("valid_phone_acc", -1) <= 1 for x in rows) and "phone accuracy" in r.stdout + r.stderr
    state = json.loads((straight / "checkpoints" / "step_0000004" / "trainer_state.json").read_text())
    assert state["phones"] == ["user:a", "user:b", "user:c"]  # pauses are no class
    import tokenlm.codecs as tc

    assert tc.load(straight / "model").config.num_codebooks == 4  # an ordinary codec: the classifier stays out
    # kill -9 and resume: the classifier and its optimizer state come back too
    r = run([sys.executable, str(RECIPE), *args(corpus, killed, *common, "--kill-at-step", "3")])
    assert r.returncode == -signal.SIGKILL
    r = run([sys.executable, str(RECIPE), *args(corpus, killed, *common, "--resume")])
    assert r.returncode == 0, r.stderr[-2000:]
    a, b = weights(straight), weights(killed)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    # resuming it without --phone-weight, or asking for phones with no timings, fails in one line
    r = run([sys.executable, str(RECIPE), *args(corpus, killed, "--steps", "6", "--resume")])
    assert r.returncode == 1 and "--phone-weight" in r.stderr and "Traceback" not in r.stderr
    bare = tmp_path / "bare.jsonl"
    bare.write_text("".join(x for x in (corpus / "train.jsonl").read_text().splitlines(True) if '"phones"' not in x))
    r = run([sys.executable, str(RECIPE), *args(corpus, tmp_path / "bare", "--steps", "1", "--phone-weight", "1"),
             "--train", str(bare)])
    assert r.returncode == 1 and "--phones" in r.stderr and "Traceback" not in r.stderr


def test_phone_judge_then_a_phonetic_loss_on_the_decoded_audio(corpus, tmp_path):
    """train_phone_judge.py learns the made-up phones; --phonetic-judge then adds its KL to the codec's loss
    (logged and validated), and the judge stays out of the codec."""
    judge = tmp_path / "judge"
    r = run([sys.executable, str(ROOT / "recipes" / "train_phone_judge.py"), "--train", str(corpus / "train.jsonl"),
             "--valid", str(corpus / "valid.jsonl"), "--out", str(judge), "--steps", "60", "--batch-size", "4",
             "--crop-seconds", "0.5", "--channels", "32", "--layers", "2", "--eval-every", "30", "--threads", "1"])
    assert r.returncode == 0, r.stderr[-2000:]
    from tokenlm.codecs.phonetic import PAUSE, load_phone_judge

    loaded = load_phone_judge(judge)
    assert loaded.config.classes == [PAUSE, "user:a", "user:b", "user:c"]
    rows = [json.loads(x) for x in (judge / "log.jsonl").read_text().splitlines()]
    losses = [x["loss"] for x in rows if "loss" in x]
    assert losses[-1] < losses[0]
    assert [x["step"] for x in rows if "valid_acc" in x] == [30, 60]
    out = tmp_path / "run"
    r = run([sys.executable, str(RECIPE), *args(corpus, out, "--steps", "3", "--save-every", "3", "--adv-weight", "0",
                                                "--phonetic-judge", str(judge), "--phonetic-weight", "0.5")])
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert all(x["phonetic"] >= 0 and 0 <= x["judge_agree"] <= 1 for x in rows if "loss" in x)
    assert any(x.get("valid_phonetic", -1) >= 0 for x in rows) and "phonetic KL" in r.stdout + r.stderr
    import tokenlm.codecs as tc

    assert tc.load(out / "model").config.num_codebooks == 4
    # one without the other, or a folder that is no judge: one line, no traceback
    r = run([sys.executable, str(RECIPE), *args(corpus, tmp_path / "x", "--steps", "1", "--phonetic-weight", "1")])
    assert r.returncode == 1 and "--phonetic-judge" in r.stderr and "Traceback" not in r.stderr
    r = run([sys.executable, str(RECIPE), *args(corpus, tmp_path / "y", "--steps", "1", "--phonetic-weight", "1",
                                                "--phonetic-judge", str(corpus))])
    assert r.returncode == 1 and "phone judge" in r.stderr and "Traceback" not in r.stderr
