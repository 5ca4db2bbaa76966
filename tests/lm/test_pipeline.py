"""The LM pipeline end to end on a toy corpus: tokenizer -> pretokenize -> train_lm (resume after
kill -9, two processes over gloo) -> load -> transcribe / speak, from Python and the CLI."""

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

from tokenlm.errors import CheckpointError, CodecError, TokenLMError

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "recipes"
SENTENCES = ["one two three", "the cat sat on the mat", "hello there my friend", "two cats and one dog",
             "a quiet evening at home", "three friends went home"]


def run(script, *argv, launcher=()):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, *launcher, str(RECIPES / script), *map(str, argv)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, input="")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """Six utterances of tones (one 'word' per tone) with word times, a tokenizer, and shards."""
    d = tmp_path_factory.mktemp("toy")
    (d / "audio").mkdir()
    lines = []
    for i, text in enumerate(SENTENCES):
        words, wav, t = [], [], 0.1
        wav.append(np.zeros(1600))
        for j, w in enumerate(text.split()):
            n = int(16000 * (0.15 + 0.02 * len(w)))
            tt = np.arange(n) / 16000
            wav.append(0.3 * np.sin(2 * np.pi * (150 + 40 * (hash(w) % 7)) * tt) * np.hanning(n))
            words.append({"word": w.capitalize() if j == 0 else w, "start": round(t, 4), "end": round(t + n / 16000, 4)})
            t += n / 16000
        wav.append(np.zeros(3200))
        wav = np.concatenate(wav).astype(np.float32)
        sf.write(d / "audio" / f"u{i}.wav", wav, 16000, subtype="PCM_16")
        lines.append({"id": f"u{i}", "audio": f"audio/u{i}.wav", "text": text.capitalize() + ".", "words": words,
                      "voice": "flite+kal" if i % 2 else "espeak+m1", "engine": "user",
                      "duration": len(wav) / 16000, "sample_rate": 16000, "split": "train"})
    (d / "train.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    r = run("train_tokenizer.py", "--manifest", d / "train.jsonl", "--vocab-size", "40", "--out", d / "tok.model")
    assert r.returncode == 0, r.stderr[-2000:]
    r = run("pretokenize.py", "--manifest", d / "train.jsonl", "--tokenizer", d / "tok.model", "--codec", "tiny",
            "--out", d / "tokens", "--shard-size", "4", "--threads", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    return d


def lm_args(toy, out, task="asr", *extra):
    return ["--task", task, "--train", toy / "tokens", "--valid", toy / "tokens", "--tokenizer", toy / "tok.model",
            "--out", out, "--preset", "tiny", "--batch-size", "2", "--max-frames", "40", "--warmup", "2",
            "--eval-every", "3", "--eval-items", "4", "--log-every", "1", "--threads", "1", "--text-delay", "3",
            *extra]


def test_shards_hold_codes_and_aligned_text(toy):
    from tokenlm.lm.data import TokenShards
    from tokenlm.lm.tokenizer import TextTokenizer

    index = json.loads((toy / "tokens" / "index.json").read_text())
    assert index["shards"] == 2 and index["utterances"] == 6 and index["num_codebooks"] == 4
    shards = TokenShards(toy / "tokens")
    tok = TextTokenizer.load(toy / "tok.model")
    assert len(shards) == 6 and shards.texts[1] == "the cat sat on the mat"
    assert len(TokenShards([toy / "tokens", toy / "tokens"])) == 12  # a corpus and its extension
    card = tok.vocab_size
    for codes, text, ref in zip(shards.codes, shards.text, shards.texts):
        assert codes.shape[0] == 4 and codes.shape[1] == text.shape[0]
        assert int((text == card + 1).sum()) == len(ref.split()) + 1  # an EPAD per word + the end mark
        assert tok.decode(text[text < card].tolist()) == ref
    # rerunning finds every shard done and rewrites nothing
    before = {p: p.stat().st_mtime_ns for p in (toy / "tokens").glob("shard-*")}
    r = run("pretokenize.py", "--manifest", toy / "train.jsonl", "--tokenizer", toy / "tok.model", "--codec", "tiny",
            "--out", toy / "tokens", "--shard-size", "4")
    assert r.returncode == 0 and before == {p: p.stat().st_mtime_ns for p in (toy / "tokens").glob("shard-*")}


def test_resynthesized_shards_are_the_codes_decoded_and_encoded_again(toy, tmp_path):
    import tokenlm.codecs as tc
    from tokenlm.lm.data import TokenShards

    base = ["--manifest", toy / "train.jsonl", "--tokenizer", toy / "tok.model", "--shard-size", "4"]
    r = run("pretokenize.py", *base, "--from-shards", toy / "tokens", "--resynth", "tiny", "--codec", "tiny",
            "--out", tmp_path / "rt")
    assert r.returncode == 0, r.stderr[-2000:]
    src, rt = TokenShards(toy / "tokens"), TokenShards(tmp_path / "rt")
    assert rt.ids == src.ids and rt.meta == src.meta
    codec = tc.load("tiny").eval()
    changed = 0
    for a, b, ta, tb in zip(src.codes, rt.codes, src.text, rt.text):
        with torch.inference_mode():
            want = codec.encode(codec.decode(a[None]))[0][:, : a.shape[1]]
        assert torch.equal(b, want) and torch.equal(ta, tb)  # same words at the same frames
        changed += int((a != b).any())
    assert changed  # the round trip is not the identity, or this would teach nothing
    r = run("pretokenize.py", *base, "--resynth", "tiny", "--out", tmp_path / "bad")
    assert r.returncode == 2 and "--resynth needs --from-shards" in r.stderr
    r = run("pretokenize.py", *base, "--from-shards", toy / "tokens", "--resynth", "default", "--codec", "tiny",
            "--out", tmp_path / "bad")
    assert r.returncode == 1 and "another codec than default" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.skipif(not __import__("tokenlm.data.tts", fromlist=["x"]).engine_available("flite"),
                    reason="needs libflite1 (make speech-deps)")
def test_a_phone_asr_writes_lexicon_words_offline_and_streaming(toy, tmp_path):
    from tokenlm.audio import load_audio
    from tokenlm.lm.tasks import Transcriber

    r = run("train_tokenizer.py", "--phones", "--counts", "--manifest", toy / "train.jsonl",
            "--out", tmp_path / "phones.model")
    assert r.returncode == 0, r.stderr[-2000:]
    r = run("pretokenize.py", "--manifest", toy / "train.jsonl", "--tokenizer", tmp_path / "phones.model",
            "--from-shards", toy / "tokens", "--out", tmp_path / "ph", "--shard-size", "4")
    assert r.returncode == 0, r.stderr[-2000:]
    args = lm_args(toy, tmp_path / "run", "asr", "--steps", "3", "--save-every", "3", "--lr", "3e-2")
    args[args.index("--train") + 1] = args[args.index("--valid") + 1] = tmp_path / "ph"
    args[args.index("--tokenizer") + 1] = tmp_path / "phones.model"
    r = run("train_lm.py", *args)
    assert r.returncode == 0, r.stderr[-2000:]
    assert any("valid_wer" in json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines())
    wav, _ = load_audio(toy / "audio" / "u1.wav", 16000, 1)
    for constrain in (False, True):
        tr = Transcriber(str(tmp_path / "run" / "model"), constrain=constrain)
        offline = tr.transcribe(wav)
        session, streamed = tr.session(), []
        for i in range(0, wav.shape[1], 1000):
            streamed += session.push(wav[:, i: i + 1000])
        streamed += session.finish()
        assert [w.to_dict() for w in streamed] == [w.to_dict() for w in offline]
        assert all(w.word in tr.tokenizer.lexicon for w in offline)

    # with a word language model (the recipe's, shipped in the checkpoint folder by export_lm.py) the
    # Transcriber's offline decoding becomes a beam search (tests/lm/test_beam.py checks its results)
    from tokenlm.lm.beam import BeamSettings

    r = run("train_word_lm.py", "--manifest", toy / "train.jsonl", "--out", tmp_path / "words.arpa")
    assert r.returncode == 0, r.stderr[-2000:]
    r = run("export_lm.py", tmp_path / "run" / "model", tmp_path / "shipped", "--word-lm", tmp_path / "words.arpa")
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "shipped" / "words.arpa.gz").is_file()
    tr = Transcriber(str(tmp_path / "shipped"))
    assert tr.beam is not None and tr.beam.beam == BeamSettings().beam and tr.word_lm is not None
    assert all(w.word in tr.tokenizer.lexicon for w in tr.transcribe(wav))
    assert Transcriber(str(tmp_path / "shipped"), word_lm=False).beam is None  # no language model: greedy


@pytest.fixture(scope="module")
def asr_run(toy, tmp_path_factory):
    out = tmp_path_factory.mktemp("asr") / "run"
    r = run("train_lm.py", *lm_args(toy, out, "asr", "--steps", "4", "--save-every", "4"))
    assert r.returncode == 0, r.stderr[-2000:]
    return out


def test_training_logs_validates_and_exports(asr_run):
    from tokenlm.lm.checkpoint import load_lm

    rows = [json.loads(x) for x in (asr_run / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in rows if "loss" in x] == [1, 2, 3, 4]
    assert any("valid_loss/text" in x for x in rows)
    lm = load_lm(asr_run / "model")
    assert lm.task == "asr" and lm.model.streams.delays[0] == 3 and lm.codec_info["name"] == "tiny"
    assert "train_lm.py" in (asr_run / "command.txt").read_text()


def test_transcriber_streaming_matches_offline_and_cli(asr_run, toy, tmp_path):
    from tokenlm.audio import load_audio
    from tokenlm.cli import main as cli
    from tokenlm.lm.tasks import Transcriber

    tr = Transcriber(str(asr_run / "model"))
    wav, _ = load_audio(toy / "audio" / "u1.wav", 16000, 1)
    offline = tr.transcribe(wav)
    session, streamed = tr.session(), []
    for i in range(0, wav.shape[1], 1000):  # chunks that are not whole frames
        streamed += session.push(wav[:, i: i + 1000])
    streamed += session.finish()
    assert [w.to_dict() for w in streamed] == [w.to_dict() for w in offline]
    assert all(0 <= w.start < w.end for w in offline)
    assert cli(["transcribe", str(toy / "audio" / "u1.wav"), "--model", str(asr_run / "model"), "--json"]) == 0
    # the wrong model for the task, and a broken checkpoint, fail clearly
    with pytest.raises(TokenLMError, match="not for speech synthesis"):
        from tokenlm.lm.tasks import Speaker

        Speaker(str(asr_run / "model"))
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in ("config.json", "tokenizer.model"):
        (broken / f).write_bytes((asr_run / "model" / f).read_bytes())
    data = (asr_run / "model" / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cannot read weights"):
        Transcriber(str(broken))
    with pytest.raises(CheckpointError, match="no LM checkpoint or bundled model named 'nope'"):
        Transcriber("nope")


def test_asr_evaluation_scores_every_group(asr_run, toy, tmp_path):
    from tokenlm.lm.evaluation import evaluate_asr, wer

    r = evaluate_asr(str(asr_run / "model"), toy / "train.jsonl", tmp_path, limit=5, batch_size=2,
                     pocketsphinx=False)
    assert r["utterances"] == 5 and len(r["rows"]) == 5
    # one engine here ("user") with two voices: a row for all, the engine, and each voice
    assert set(r["wer"]) == {"all", "user", "user flite+kal", "user espeak+m1"}
    assert r["wer"]["user flite+kal"]["n"] + r["wer"]["user espeak+m1"]["n"] == r["wer"]["all"]["n"] == 5
    rows = [x for x in r["rows"] if x["voice"] == "flite+kal"]
    assert r["wer"]["user flite+kal"]["tokenlm"] == round(wer([x["ref"] for x in rows], [x["tokenlm"] for x in rows]), 4)
    table = (tmp_path / "asr_eval.md").read_text()
    assert "| user flite+kal | 2 |" in table and "| all | 5 |" in table
    assert (tmp_path / "asr_eval.json").exists()
    # long recordings: consecutive utterances of one voice end to end, transcribed in pieces
    j = evaluate_asr(str(asr_run / "model"), toy / "train.jsonl", tmp_path / "j", limit=5, pocketsphinx=False, join=2)
    by_voice = {}
    for x in r["rows"]:
        by_voice.setdefault(x["voice"], []).append(x["ref"])
    assert sorted(x["ref"] for x in j["rows"]) == sorted(
        " ".join(refs[i: i + 2]) for refs in by_voice.values() for i in range(0, len(refs), 2))
    assert j["join"] == 2 and j["max_seconds"] == 10.0 and "recordings of 2 utterances" in j["decoding"]
    # through streaming sessions (greedy): the same words as offline greedy decoding of each file
    s = evaluate_asr(str(asr_run / "model"), toy / "train.jsonl", tmp_path / "s", limit=5, pocketsphinx=False,
                     beam=0, stream=True)
    g = evaluate_asr(str(asr_run / "model"), toy / "train.jsonl", tmp_path / "g", limit=5, pocketsphinx=False, beam=0)
    assert s["stream"] and "streaming, greedy" in s["decoding"] and not g["stream"]
    assert [x["tokenlm"] for x in s["rows"]] == [x["tokenlm"] for x in g["rows"]]
    assert all(x["contexts"] >= 1 for x in s["rows"])


def test_training_continues_from_a_trained_lm(asr_run, toy, tmp_path):
    from tokenlm.lm.checkpoint import load_lm

    # with dropout switched on and the audio input corrupted (time masks, random codes)
    r = run("train_lm.py", *lm_args(toy, tmp_path / "more", "asr", "--steps", "2", "--save-every", "2",
                                    "--init-from", asr_run / "model", "--set", "dropout=0.1", "--time-masks", "2",
                                    "--mask-frames", "5", "--code-noise", "0.1"))
    assert r.returncode == 0, r.stderr[-2000:]
    more = load_lm(tmp_path / "more" / "model")
    a, b = load_lm(asr_run / "model").model.state_dict(), more.model.state_dict()
    assert a.keys() == b.keys() and any(not torch.equal(a[k], b[k]) for k in a)
    assert more.model.config.dropout == 0.1
    r = run("train_lm.py", *lm_args(toy, tmp_path / "bad1", "asr", "--steps", "1", "--init-from", asr_run / "model",
                                    "--set", "dim=64"))
    assert r.returncode == 1 and "only dropout can change" in r.stderr
    r = run("train_lm.py", *lm_args(toy, tmp_path / "bad", "tts", "--steps", "1", "--init-from", asr_run / "model"))
    assert r.returncode == 1 and "is a 'asr' model" in r.stderr


def test_an_lm_moves_onto_another_codecs_tokens(toy, tmp_path):
    import warnings

    import tokenlm.codecs as tc
    from tokenlm.lm.checkpoint import load_lm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other = tc.untrained("tiny", seed=1)  # another codec: its own encoder and codebooks
    tc.save_codec(other, tmp_path / "other")
    r = run("pretokenize.py", "--manifest", toy / "train.jsonl", "--tokenizer", toy / "tok.model", "--codec",
            tmp_path / "other", "--out", tmp_path / "tokens2", "--shard-size", "4", "--threads", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    first = tmp_path / "first"
    r = run("train_lm.py", *lm_args(toy, first, "asr", "--steps", "2", "--save-every", "2", "--codec-features"))
    assert r.returncode == 0, r.stderr[-2000:]
    moved = ["--train", tmp_path / "tokens2", "--valid", tmp_path / "tokens2", "--init-from", first / "model"]
    r = run("train_lm.py", *lm_args(toy, tmp_path / "refused", "asr", "--steps", "1", *moved))
    assert r.returncode == 1 and "another codec" in r.stderr and "--new-codec" in r.stderr
    r = run("train_lm.py", *lm_args(toy, tmp_path / "moved", "asr", "--steps", "2", "--save-every", "2", *moved,
                                    "--new-codec"))
    assert r.returncode == 0, r.stderr[-2000:]
    a, b = load_lm(first / "model"), load_lm(tmp_path / "moved" / "model")
    assert b.codec_info["fingerprint"] == other.token_fingerprint != a.codec_info["fingerprint"]
    want = other.codebook_vectors()[: b.model.embed.codebooks.shape[0]].float()
    got = b.model.embed.codebooks
    torch.testing.assert_close(got / got.norm(), want / want.norm(), atol=1e-3, rtol=1e-3)
    r = run("train_lm.py", *lm_args(toy, tmp_path / "same", "asr", "--steps", "1", "--init-from", first / "model",
                                    "--new-codec"))
    assert r.returncode == 1 and "already" in r.stderr
    r = run("train_lm.py", *lm_args(toy, tmp_path / "alone", "asr", "--steps", "1", "--new-codec"))
    assert r.returncode == 1 and "goes with --init-from" in r.stderr


@pytest.mark.skipif(not __import__("tokenlm.data.tts", fromlist=["x"]).engine_available("flite"),
                    reason="needs libflite1 (make speech-deps)")
def test_a_tts_moves_onto_a_phone_lexicon(toy, tmp_path):
    from tokenlm.lm.checkpoint import load_lm
    from tokenlm.lm.data import TokenShards
    from tokenlm.lm.tasks import Speaker
    from tokenlm.lm.tokenizer import PhoneTokenizer, load_tokenizer

    r = run("train_tokenizer.py", "--phones", "--manifest", toy / "train.jsonl", "--out", tmp_path / "phones.model")
    assert r.returncode == 0, r.stderr[-2000:]
    tok = load_tokenizer(tmp_path / "phones.model")
    assert isinstance(tok, PhoneTokenizer) and "cat" in tok.lexicon
    # new text streams over the codes already made: the audio is not encoded again
    r = run("pretokenize.py", "--manifest", toy / "train.jsonl", "--tokenizer", tmp_path / "phones.model",
            "--from-shards", toy / "tokens", "--out", tmp_path / "ph", "--shard-size", "4")
    assert r.returncode == 0, r.stderr[-2000:]
    old, new = TokenShards(toy / "tokens"), TokenShards(tmp_path / "ph")
    assert new.ids == old.ids and new.texts == old.texts and new.meta["text_card"] == tok.vocab_size
    for a, b, text, words in zip(old.codes, new.codes, new.text, new.texts):
        assert torch.equal(a, b)
        want = " ".join(" ".join(tok.lexicon[w].split()) for w in words.split())
        assert tok.decode(text[text < tok.vocab_size].tolist()) == want
    first = tmp_path / "first"
    common = ("--steps", "2", "--save-every", "2", "--audio-delay", "2", "--codec-features")
    r = run("train_lm.py", *lm_args(toy, first, "tts", *common))
    assert r.returncode == 0, r.stderr[-2000:]
    moved = ["--train", tmp_path / "ph", "--valid", tmp_path / "ph", "--tokenizer", tmp_path / "phones.model",
             "--init-from", first / "model"]
    r = run("train_lm.py", *lm_args(toy, tmp_path / "refused", "tts", *common, *moved))
    assert r.returncode == 1 and "another tokenizer" in r.stderr and "--new-tokenizer" in r.stderr
    r = run("train_lm.py", *lm_args(toy, tmp_path / "moved", "tts", *common, *moved, "--new-tokenizer", "--lr", "0"))
    assert r.returncode == 0, r.stderr[-2000:]
    a, b = load_lm(first / "model"), load_lm(tmp_path / "moved" / "model")
    assert isinstance(b.tokenizer, PhoneTokenizer) and b.model.streams[0].card == tok.vocab_size
    sa, sb = a.model.state_dict(), b.model.state_dict()
    same = [k for k in sa if sa[k].shape == sb[k].shape]
    assert len(same) < len(sa) and "embed.tables.0.weight" not in same
    for k in same:  # learning rate 0: what was kept is exactly the first model's
        torch.testing.assert_close(sa[k], sb[k], msg=k)
    wav = Speaker(b).speak("two cats", max_seconds=1.0)
    assert wav.shape[0] == 1 and wav.shape[1] > 0 and torch.isfinite(wav).all()
    r = run("train_lm.py", *lm_args(toy, tmp_path / "same", "tts", *common, "--init-from", first / "model",
                                    "--new-tokenizer"))
    assert r.returncode == 1 and "already" in r.stderr
    r = run("train_lm.py", *lm_args(toy, tmp_path / "alone", "tts", *common, "--new-tokenizer"))
    assert r.returncode == 1 and "goes with --init-from" in r.stderr


def test_time_limit_stops_saves_and_decays_the_learning_rate(toy, tmp_path):
    out = tmp_path / "timed"
    r = run("train_lm.py", *lm_args(toy, out, "asr", "--steps", "100000", "--save-every", "100000", "--lr", "1e-3",
                                    "--time-limit", "0.03"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "--time-limit 0.03 min reached at step" in r.stdout + r.stderr
    rows = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    steps = [x["step"] for x in rows if "loss" in x]
    assert 2 < steps[-1] < 100000
    lrs = [x["lr"] for x in rows if "loss" in x]
    assert max(lrs) > 5e-4 and lrs[-1] < 2e-4  # warmed up, then cosine down to its floor (0.1 x) by the time limit
    assert any("valid_loss" in x for x in rows if x["step"] == steps[-1])  # a last validation at the stop
    assert (out / "checkpoints" / "latest").read_text().strip() == f"step_{steps[-1]:07d}"  # saved at the stop
    assert (out / "model" / "model.safetensors").exists()
    r = run("train_lm.py", *lm_args(toy, tmp_path / "bad", "asr", "--steps", "3", "--time-limit", "0"))
    assert r.returncode == 1 and "--time-limit must be > 0" in r.stderr


def test_export_float16_and_interim_warning(asr_run, tmp_path, capsys):
    from tokenlm.cli import main as cli
    from tokenlm.lm.checkpoint import InterimModelWarning, load_lm

    r = run("export_lm.py", asr_run / "model", tmp_path / "small", "--interim", "--note", "WER 97% on test",
            "--voices", "kal16")
    assert r.returncode == 0, r.stderr[-2000:]
    with pytest.warns(InterimModelWarning, match="WER 97% on test"):
        small = load_lm(tmp_path / "small")
    assert small.header["voices"] == "kal16" and small.header["note"] == "WER 97% on test"
    full = load_lm(asr_run / "model")
    for k, v in full.model.state_dict().items():
        torch.testing.assert_close(small.model.state_dict()[k], v, atol=1e-3, rtol=1e-2)
    wav = Path(__file__).resolve().parents[2] / "examples" / "data" / "sample.wav"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("default")  # as outside pytest
        assert cli(["transcribe", str(wav), "--model", str(tmp_path / "small")]) == 0
    err = capsys.readouterr().err
    assert "tokenlm: warning:" in err and "WER 97% on test" in err and "Traceback" not in err


def test_an_lm_refuses_a_codec_with_other_tokens(asr_run):
    import warnings

    import tokenlm.codecs as tc
    from tokenlm.lm.tasks import Transcriber

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other = tc.load("tiny")
    with torch.no_grad():
        other.encoder.convs[0].conv.weight.add_(0.01)
    with pytest.raises(CodecError, match="meaningless"):
        Transcriber(str(asr_run / "model"), codec=other)


def test_an_lm_ships_its_own_codec_with_its_codes(asr_run, tmp_path):
    """export_lm.py --codec: a codec with the model's codes (the decoder fine-tuned on its voice)
    goes into the checkpoint as codec/ and is what the model decodes with; other codes are refused."""
    import warnings

    import tokenlm.codecs as tc
    from tokenlm.lm.checkpoint import load_lm
    from tokenlm.lm.tasks import Transcriber, load_codec_for

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        voiced = tc.load("tiny")
    with torch.no_grad():  # a changed decoder keeps the codes
        for w in voiced.decoder.parameters():
            w.add_(0.01)
    voiced.trained = True
    tc.save_codec(voiced, tmp_path / "voiced")
    assert load_lm(asr_run / "model").codec_path is None
    r = run("export_lm.py", asr_run / "model", tmp_path / "shipped", "--codec", tmp_path / "voiced")
    assert r.returncode == 0, r.stderr[-2000:]
    lm = load_lm(tmp_path / "shipped")
    assert lm.codec_path == tmp_path / "shipped" / "codec"
    own = load_codec_for(lm)
    assert own.token_fingerprint == voiced.token_fingerprint
    for a, b in zip(own.decoder.parameters(), voiced.decoder.parameters()):
        torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-2)  # float16 on disk
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = tc.load("tiny")
    assert Transcriber(str(tmp_path / "shipped"), codec=plain).codec is plain  # an explicit codec wins
    # exported again without --codec: the source's own codec comes along
    r = run("export_lm.py", tmp_path / "shipped", tmp_path / "again")
    assert r.returncode == 0 and (tmp_path / "again" / "codec" / "model.safetensors").is_file(), r.stderr[-2000:]

    with torch.no_grad():  # other codes: refused at export, one line, nothing written
        voiced.encoder.convs[0].conv.weight.add_(0.01)
    tc.save_codec(voiced, tmp_path / "other")
    r = run("export_lm.py", asr_run / "model", tmp_path / "refused", "--codec", tmp_path / "other")
    assert r.returncode == 1 and "--decoder-only" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "refused" / "codec").exists()
    # and at load time, should a checkpoint's codec/ folder not fit
    tc.save_codec(voiced, tmp_path / "shipped" / "codec", inference_only=True)
    with pytest.raises(CodecError, match="meaningless") as e:
        Transcriber(str(tmp_path / "shipped"))
    assert str(e.value).startswith(f"{tmp_path / 'shipped' / 'codec'}: ")


def test_tts_trains_speaks_and_resumes_after_kill_9(toy, tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    common = ("--steps", "6", "--save-every", "2", "--audio-delay", "2", "--codec-features")
    r = run("train_lm.py", *lm_args(toy, straight, "tts", *common))
    assert r.returncode == 0, r.stderr[-2000:]
    r = run("train_lm.py", *lm_args(toy, killed, "tts", *common, "--kill-at-step", "5"))
    assert r.returncode == -signal.SIGKILL
    r = run("train_lm.py", *lm_args(toy, killed, "tts", *common, "--resume"))
    assert r.returncode == 0 and "resumed from" in r.stderr, r.stderr[-2000:]
    rows = [json.loads(x) for x in (killed / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in rows if "loss" in x] == [1, 2, 3, 4, 5, 6]
    a, b = load_file(str(straight / "model" / "model.safetensors")), load_file(str(killed / "model" / "model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    # --codec-features: the model embeds codes through the tiny codec's own codebook vectors
    import warnings

    import tokenlm.codecs as tc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cb = tc.load("tiny").codebook_vectors()
    got = a["embed.codebooks"].float()
    assert got.shape[1:] == cb.shape[1:]
    torch.testing.assert_close(got / got.norm(), cb[: got.shape[0]] / cb[: got.shape[0]].norm(), atol=1e-3, rtol=1e-3)

    from tokenlm.cli import main as cli
    from tokenlm.lm.tasks import Speaker

    sp = Speaker(str(straight / "model"))
    wav = sp.speak("two cats", max_seconds=1.0)
    assert wav.dim() == 2 and wav.shape[0] == 1 and 0 < wav.shape[1] <= 16000 * 1.2 and torch.isfinite(wav).all()
    again = sp.speak("two cats", max_seconds=1.0)
    assert torch.equal(wav, again)  # seeded
    out = tmp_path / "said.wav"
    assert cli(["speak", "Hello, 3 cats!", "-o", str(out), "--model", str(straight / "model")]) == 0
    assert sf.info(str(out)).samplerate == 16000
    assert cli(["speak", "...", "-o", str(tmp_path / "x.wav"), "--model", str(straight / "model")]) == 1
    assert not (tmp_path / "x.wav").exists()

    # evaluation, with the reference row: the imitated voice through the same codec and judges
    from tokenlm.lm.evaluation import evaluate_tts, reference_voice_for

    assert reference_voice_for("kal16") == ("flite", "kal16")
    assert reference_voice_for("awb,kal16") is None and reference_voice_for(None) is None
    res = evaluate_tts(str(straight / "model"), ["two cats", "three dogs"], tmp_path / "eval", asr_model=None,
                       reference=("flite", "kal16"), save_audio=1)
    assert res["sentences"] == 2 and res["reference"]["sentences"] == 2
    assert res["seed"] == 0 and res["threads"] == torch.get_num_threads()  # what reproduces the sampling
    assert (res["temperature"], res["top_k"], res["timing_temperature"]) == (0.5, 50, 0.0)
    assert res["tail_seconds"] == 0.12 and res["max_words"] == 25  # recorded with the sampling
    assert set(res["reference"]["wer"]) == {"pocketsphinx"} and 0 <= res["reference"]["wer"]["pocketsphinx"] < 5
    table = (tmp_path / "eval" / "tts_eval.md").read_text()
    assert "temperature 0.5, top-k 50, word timing greedy, 0.12 s after the end mark" in table
    assert "| the model | 2 |" in table and "| reference: flite kal16 through the codec (4 codebooks) | 2 |" in table
    raw = res["reference_without_codec"]  # the judges' share alone: the same flite audio before the codec
    assert raw["sentences"] == 2 and [r["text"] for r in raw["rows"]] == ["two cats", "three dogs"]
    assert 0 <= raw["wer"]["pocketsphinx"] < 5 and "| the same voice without the codec | 2 |" in table
    assert (tmp_path / "eval" / "tts_samples" / "sample_0.wav").exists()
    assert (tmp_path / "eval" / "tts_samples" / "sample_0_reference.wav").exists()
    assert (tmp_path / "eval" / "tts_spectrograms.png").read_bytes()[:4] == b"\x89PNG"


def test_two_cpu_processes_over_gloo(toy, tmp_path):
    out = tmp_path / "ddp"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launcher = ("-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port))
    # --time-limit: the clock is broadcast from process 0 (never reached here)
    r = run("train_lm.py", *lm_args(toy, out, "asr", "--steps", "3", "--save-every", "3", "--cpu", "--time-limit", "30"),
            launcher=launcher)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "processes=2" in (out / "command.txt").read_text()
    assert (out / "model" / "model.safetensors").exists()


def test_voice_selection_and_bad_arguments(toy, tmp_path):
    r = run("train_lm.py", *lm_args(toy, tmp_path / "v", "tts", "--steps", "1", "--voices", "flite",
                                    "--manifest", toy / "train.jsonl"))
    assert r.returncode == 0 and "3 training utterances" in r.stderr, r.stderr[-2000:]
    lines = (toy / "train.jsonl").read_text().splitlines(keepends=True)  # the same, split over two manifests
    (tmp_path / "a.jsonl").write_text("".join(lines[: len(lines) // 2]))
    (tmp_path / "b.jsonl").write_text("".join(lines[len(lines) // 2:]))
    r = run("train_lm.py", *lm_args(toy, tmp_path / "v2", "tts", "--steps", "1", "--voices", "flite",
                                    "--manifest", tmp_path / "a.jsonl", tmp_path / "b.jsonl"))
    assert r.returncode == 0 and "3 training utterances" in r.stderr, r.stderr[-2000:]
    r = run("train_lm.py", *lm_args(toy, tmp_path / "w", "tts", "--steps", "1", "--voices", "nobody",
                                    "--manifest", toy / "train.jsonl"))
    assert r.returncode == 1 and "no training utterance" in r.stderr
    r = run("train_lm.py", *lm_args(toy, tmp_path / "x", "asr", "--steps", "1", "--codebooks", "9"))
    assert r.returncode == 1 and "--codebooks must be in 1..4" in r.stderr
