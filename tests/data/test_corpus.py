"""The offline speech corpus: text normalization, the two engines' word timings, and the builder.

Engine and builder tests need Debian's libespeak-ng1 and libflite1 (`make speech-deps`); they
are skipped where those libraries are missing.
"""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tokenlm.data import corpus as corpus_mod
from tokenlm.data import text as T
from tokenlm.data import tts
from tokenlm.data.manifest import read_manifest
from tokenlm.errors import TokenLMError

ROOT = Path(__file__).resolve().parents[2]
HAVE_ENGINES = tts.engine_available("espeak-ng") and tts.engine_available("flite")
needs_engines = pytest.mark.skipif(not HAVE_ENGINES, reason="needs libespeak-ng1 and libflite1 (make speech-deps)")

# ---- text ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n,words",
    [(0, "zero"), (7, "seven"), (13, "thirteen"), (40, "forty"), (45, "forty five"), (100, "one hundred"),
     (101, "one hundred one"), (999, "nine hundred ninety nine"), (1000, "one thousand"),
     (2024, "two thousand twenty four"), (9999, "nine thousand nine hundred ninety nine")],
)
def test_number_to_words(n, words):
    assert T.number_to_words(n) == words


def test_years_ordinals_and_range():
    assert [T.year_to_words(y) for y in (1066, 1900, 1905, 1984, 2000, 2007, 2024)] == [
        "ten sixty six", "nineteen hundred", "nineteen oh five", "nineteen eighty four", "two thousand",
        "two thousand seven", "twenty twenty four",
    ]
    assert [T.ordinal_to_words(n) for n in (1, 2, 3, 5, 12, 20, 21, 100)] == [
        "first", "second", "third", "fifth", "twelfth", "twentieth", "twenty first", "one hundredth",
    ]
    for bad in (-1, 10000, 2.5, True):
        with pytest.raises(ValueError):
            T.number_to_words(bad)


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("In 1984, Mr. Smith's well-known dog ate 42 apples", "In nineteen eighty four, Mister Smith's well-known dog ate forty two apples."),
        ("It costs $3.50 -- or 25% more -- at 10:30 on the 21st.", "It costs three dollars and fifty cents, or twenty five percent more, at ten thirty on the twenty first."),
        ("\u201cHello,\u201d she said\u2026 \u2018quietly\u2019 (really) to Dr. Who", "Hello, she said, quietly, really, to Doctor Who."),
        ("the  U.N. met in   the 1960s at St. Paul, e.g. twice", "The U N met in the nineteen sixties at Saint Paul, for example twice."),
        ("Caf\u00e9 na\u00efve r\u00e9sum\u00e9 & co", "Cafe naive resume and co."),
        ("Is it 3.14 or .5?", "Is it three point one four or point five?"),
        ("Call 555-1234 now", None),  # phone number
        ("He earned 20,000 dollars", None),  # > 9999
        ("Use ~/bin/*.sh or {x}", None),  # a token without a word is left
        ("x = y + 1", None),
        ("", None),
    ],
)
def test_normalize_text(raw, expected):
    assert T.normalize_text(raw) == expected


def test_words_of_and_sentence_splitting():
    assert T.words_of("Hello, she said, don't go-on... now!") == ["Hello", "she", "said", "don't", "go-on", "now"]
    assert T.split_sentences("Mr. Smith went home. He slept!  Did he? Yes.") == [
        "Mister Smith went home.", "He slept!", "Did he?", "Yes.",
    ]


def test_sources_from_debian_files(tmp_path, monkeypatch):
    wn = tmp_path / "wordnet"
    wn.mkdir()
    (wn / "data.noun").write_text(
        "  1 This software and database is provided \"as is\" by Princeton\n"
        '00001740 03 n 01 entity 0 | that which is perceived; "the dog chased the cat up the tree"; "a cat"\n'
        '00002137 03 n 01 thing 0 | a separate entity; "he saw 3 things in the garden today"\n'
    )
    fo = tmp_path / "fortunes"
    fo.mkdir()
    (fo / "wisdom").write_text(
        "(1) Avoid fried meats which angry up the blood.\n(2) Keep the juices flowing.\n"
        "\t\t-- S. Paige\n%\nQ: What is this?\nA: A dialogue that is skipped.\n%\n"
        "A clash of doctrine is not a disaster -- it is an opportunity.  Think about it for a while.\n"
    )
    (fo / "wisdom.dat").write_bytes(b"\x00\x01binary index")
    assert T.wordnet_sentences(wn) == ["the dog chased the cat up the tree", "a cat", "he saw 3 things in the garden today"]
    got = T.fortune_sentences(fo)
    assert "Avoid fried meats which angry up the blood." in got and not any("Paige" in s or "dialogue" in s for s in got)

    monkeypatch.setattr(T, "WORDNET_DIR", wn)
    monkeypatch.setattr(T, "FORTUNES_DIR", fo)
    sentences = T.load_sentences(min_words=5, max_words=12)
    assert sentences == [
        "The dog chased the cat up the tree.",
        "He saw three things in the garden today.",
        "Avoid fried meats which angry up the blood.",
        "A clash of doctrine is not a disaster, it is an opportunity.",
        "Think about it for a while.",
    ]
    assert T.load_sentences(min_words=5, max_words=12) == sentences  # deterministic
    monkeypatch.setattr(T, "WORDNET_DIR", tmp_path / "none")
    monkeypatch.setattr(T, "FORTUNES_DIR", tmp_path / "none")
    with pytest.raises(TokenLMError, match="wordnet-base fortunes"):
        T.load_sentences()


# ---- engines ---------------------------------------------------------------------------------------


def test_missing_library_names_the_package():
    with pytest.raises(TokenLMError, match="install the Debian package libfoo9"):
        tts._load(["libdoes-not-exist.so.9"], "libfoo9")


def _levels(wav: torch.Tensor, hop: int = 80) -> np.ndarray:
    x = wav[0].numpy()
    n = len(x) // hop
    return np.sqrt((x[: n * hop].reshape(n, hop) ** 2).mean(axis=1))


@needs_engines
@pytest.mark.parametrize(
    "engine,voice", [("espeak-ng", "en-us"), ("espeak-ng", "en+f3"), ("espeak-ng", "en-029+klatt"),
                     ("flite", "kal16"), ("flite", "slt"), ("flite", "awb")]
)
def test_word_times_match_the_audio(engine, voice):
    """Words between sentence pauses: each starts where sound starts after silence, ends where it stops."""
    text = "Alpha. Echo. Oscar. India. Alpha."
    wav, words = tts.get_engine(engine).synthesize(text, voice)
    assert wav.dtype == torch.float32 and wav.dim() == 2 and wav.shape[0] == 1
    dur = wav.shape[-1] / tts.SAMPLE_RATE
    assert [w["word"] for w in words] == ["Alpha", "Echo", "Oscar", "India", "Alpha"]
    lv = _levels(wav)  # 5 ms frames
    fs = 0.005
    active = lv > lv.max() * 0.05
    for i, w in enumerate(words):
        assert 0 <= w["start"] < w["end"] <= dur
        prev_end = words[i - 1]["end"] if i else 0.0
        next_start = words[i + 1]["start"] if i + 1 < len(words) else dur
        assert w["start"] >= prev_end  # in order, no overlap
        if i:
            gap = lv[int(prev_end / fs) + 6 : int(w["start"] / fs) - 6]  # its middle: the tail has decayed
            assert w["start"] - prev_end > 0.08 and gap.max() < lv.max() * 0.03  # a pause: silent, or a breath
            assert lv[int(w["start"] / fs) : int(w["start"] / fs) + 20].max() > 10 * gap.mean() + 1e-4
        idx = np.nonzero(active[int((prev_end + w["start"]) / 2 / fs) : int((w["end"] + next_start) / 2 / fs)])[0]
        onset = int((prev_end + w["start"]) / 2 / fs) * fs + idx[0] * fs
        offset = int((prev_end + w["start"]) / 2 / fs) * fs + (idx[-1] + 1) * fs
        assert abs(onset - w["start"]) < 0.025, (w, onset)
        assert abs(offset - w["end"]) < 0.045, (w, offset)


@needs_engines
def test_every_word_gets_a_time_even_in_espeak_phrases():
    # espeak-ng reads "out of", "in the" as one dictionary phrase with one word event
    text = "We went out of the house in the rain, and then on the bus."
    wav, words = tts.get_engine("espeak-ng").synthesize(text, "en-us")
    assert [w["word"] for w in words] == T.words_of(text)
    starts = [w["start"] for w in words]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)


@needs_engines
def test_pad_and_trim_silence_move_word_times():
    wav, words = tts.synthesize("Alpha beta gamma.", "flite", "kal16")
    padded, moved = tts.pad_silence(wav, words, 0.25, 0.1)
    lead = round(0.25 * 16000)
    assert padded.shape[-1] == wav.shape[-1] + lead + round(0.1 * 16000)
    assert torch.equal(padded[:, lead : lead + wav.shape[-1]], wav) and padded[:, :lead].abs().max() == 0
    for a, b in zip(words, moved):
        assert b["start"] == pytest.approx(a["start"] + 0.25) and b["end"] == pytest.approx(a["end"] + 0.25)
    trimmed, back = tts.trim_silence(padded, moved, margin=0.02)
    trimmed0, back0 = tts.trim_silence(wav, words, margin=0.02)
    assert trimmed.shape[-1] < padded.shape[-1]
    assert back[0]["start"] >= 0.0 and back[-1]["end"] <= trimmed.shape[-1] / 16000
    # trimming the padded and the original audio leaves the same speech at the same times
    assert [w["start"] for w in back] == pytest.approx([w["start"] for w in back0], abs=0.011)


@needs_engines
def test_rate_pitch_and_bad_voices():
    es = tts.get_engine("espeak-ng")
    slow, _ = es.synthesize("The quick brown fox jumps over the lazy dog.", "en-us", rate=0.8)
    fast, _ = es.synthesize("The quick brown fox jumps over the lazy dog.", "en-us", rate=1.25)
    assert fast.shape[-1] < 0.85 * slow.shape[-1]
    fl = tts.get_engine("flite")
    slow, _ = fl.synthesize("The quick brown fox jumps over the lazy dog.", "kal16", rate=0.85)
    fast, _ = fl.synthesize("The quick brown fox jumps over the lazy dog.", "kal16", rate=1.2)
    assert fast.shape[-1] < 0.85 * slow.shape[-1]
    assert len(es.voices()) > 700 and "en+m3" in es.voices() and not any("robosoft" in v for v in es.voices())
    with pytest.raises(TokenLMError, match="no voice 'xx-yy'"):
        es.synthesize("Hello there.", "xx-yy")
    with pytest.raises(TokenLMError, match="en-gb ignores variants; use 'en\\+m3'"):
        es.synthesize("Hello there.", "en-gb+m3")
    with pytest.raises(TokenLMError, match="flite has no voice 'kal'"):
        fl.synthesize("Hello there.", "kal")
    with pytest.raises(TokenLMError, match="empty"):
        fl.synthesize("   ", "slt")
    with pytest.raises(TokenLMError, match="unknown TTS engine"):
        tts.get_engine("festivox")


HAVE_KED = tts.engine_available("festival") and "ked" in tts.get_engine("festival").voices()
needs_ked = pytest.mark.skipif(not HAVE_KED, reason="needs festival and festvox-kdlpc16k (make speech-deps)")


@needs_ked
def test_festival_speaks_with_word_times_rate_and_pitch():
    import torchaudio

    fe = tts.get_engine("festival")
    text = 'The quick brown fox, "Jumps" over the lazy dog - twice in 2024!'
    wav, words = fe.synthesize(text, "ked")
    assert wav.dtype == torch.float32 and wav.shape[0] == 1
    assert [w["word"] for w in words] == T.words_of(text)[:9] + ["twice", "in", "2024"]
    starts = [w["start"] for w in words]
    assert starts == sorted(starts) and all(w["start"] < w["end"] <= wav.shape[-1] / 16000 for w in words)
    assert words[0]["start"] > 0.1 and wav[0, : int(words[0]["start"] * 16000) - 320].abs().max() < 0.01
    slow, _ = fe.synthesize("The quick brown fox jumps over the lazy dog.", "ked", rate=0.85)
    fast, _ = fe.synthesize("The quick brown fox jumps over the lazy dog.", "ked", rate=1.2)
    assert fast.shape[-1] < 0.85 * slow.shape[-1]
    f0 = {p: torchaudio.functional.detect_pitch_frequency(
        fe.synthesize("The gardener planted a bed of roses near the old house.", "ked", pitch=p)[0], 16000,
        freq_low=60, freq_high=400).median().item() for p in (0.8, 1.25)}
    assert f0[1.25] > 1.2 * f0[0.8]
    # a sentence festival cannot speak is an error, and the engine goes on with the next one
    with pytest.raises(TokenLMError, match="festival could not synthesize"):
        fe.synthesize("- --", "ked")
    assert [w["word"] for w in fe.synthesize("Still here.", "ked")[1]] == ["Still", "here"]
    with pytest.raises(TokenLMError, match="festival has no voice 'slt'"):
        fe.synthesize("Hello there.", "slt")
    with pytest.raises(TokenLMError, match="empty"):
        fe.synthesize("  ", "ked")


# ---- the builder -------------------------------------------------------------------------------------

SENTENCES = [
    "The cat sat quietly on the warm mat.", "A small boat drifted slowly down the river.",
    "She opened the window to let the cool air in.", "We planted seven trees behind the old school.",
    "The train to the city leaves at noon today.", "His brother plays the piano every single evening.",
    "Bright stars filled the sky above the quiet hills.", "The baker sold fresh bread to the early crowd.",
    "Our team won the final game by three points.", "The children laughed at the clever little puppy.",
    "Rain fell softly on the roof all night long.", "The museum opens its new gallery next spring.",
    "My neighbor repaired the fence after the storm.", "Please close the door when you leave the room.",
    "The farmer counted the sheep in the green field.", "A gentle breeze moved the leaves of the oak.",
    "The doctor asked him to rest for a week.", "They walked along the beach until the sun set.",
    "The library keeps old maps in a locked room.", "Fresh snow covered the road to the village.",
    "The pilot announced a short delay before landing.", "Her garden was full of roses and tall lilies.",
    "The old clock in the hall struck twelve times.", "He wrote a long letter to his oldest friend.",
    "The river rose after a week of heavy rain.", "A young fox crossed the path in front of us.",
    "The band played until late in the crowded hall.", "We found a quiet table near the back window.",
    "The teacher read a story about a brave knight.", "Thick fog rolled in from the sea that morning.",
]


def build(out, **kw):
    args = dict(num_utterances=12, seed=3, workers=0, valid_fraction=0.25, test_fraction=0.25,
                sentences=SENTENCES, flite_share=0.5, test_flite_share=0.6, progress=False)
    args.update(kw)
    return corpus_mod.build_corpus(out, **args)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    return out, build(out)


def _plan_view(out):
    return {s: [(e["id"], e["text"], e["voice"], e["engine"]) for e in read_manifest(out / f"{s}.jsonl")] for s in ("train", "valid", "test")}


@needs_engines
def test_tiny_corpus_files_manifests_and_splits(tiny):
    out, summary = tiny
    splits = {s: read_manifest(out / f"{s}.jsonl") for s in ("train", "valid", "test")}
    assert [len(splits[s]) for s in ("train", "valid", "test")] == [6, 3, 3]
    info = json.loads((out / "corpus.json").read_text())
    assert info["total_utterances"] == 12 and info["failures"] == 0 and info["seed"] == 3
    assert info["splits"]["train"]["utterances"] == 6
    assert set(info["tools"]) >= {"espeak-ng", "flite", "python", "torch"}
    assert info["tools"]["espeak-ng"].startswith("1.")
    assert abs(info["total_hours"] * 3600 - sum(e["duration"] for v in splits.values() for e in v)) < 1
    assert not list(out.glob("*.partial")) and not (out / ".build.json").exists()
    for split, entries in splits.items():
        for e in entries:
            assert e["split"] == split and e["audio"].startswith(str(out / "audio" / split))
            data, sr = sf.read(e["audio"], dtype="float32", always_2d=True)
            i = sf.info(e["audio"])
            assert sr == 16000 and data.shape[1] == 1 and i.subtype == "PCM_16" and e["sample_rate"] == 16000
            assert data.shape[0] / 16000 == pytest.approx(e["duration"], abs=1e-6)
            assert 0.05 < np.sqrt((data**2).mean()) * 10 ** (28 / 20) * 1.5 and np.abs(data).max() <= 0.9  # level set
            words = e["words"]
            assert [w["word"] for w in words] == T.words_of(e["text"])
            assert 0.09 <= words[0]["start"] and words[-1]["end"] <= e["duration"] - 0.09  # 0.1-0.4 s silences
            for a, b in zip(words, words[1:]):
                assert a["start"] < a["end"] <= b["start"] + 1e-3 and b["start"] < b["end"]
            assert np.abs(data[:1440]).max() == 0  # the added silence (>= 0.1 s, less the trim margin)
            edge = int(words[0]["start"] * 16000) - 320
            assert np.abs(data[: max(edge, 0)]).max(initial=0) < 0.01  # and quiet up to the first word
    # disjoint voices and sentences; the recognizer's flite voices only in test
    voices = {s: {(e["engine"], e["voice"]) for e in v} for s, v in splits.items()}
    texts = {s: {e["text"] for e in v} for s, v in splits.items()}
    for a, b in (("train", "valid"), ("train", "test"), ("valid", "test")):
        assert not voices[a] & voices[b] and not texts[a] & texts[b]
    allowed = corpus_mod.voice_splits(tts.get_engine("espeak-ng").voices())
    for s in splits:
        assert voices[s] <= set(allowed[s])
    assert {("flite", "slt"), ("flite", "rms")} <= set(allowed["test"])
    assert not {v for _, v in voices["train"] | voices["valid"]} & {"slt", "rms"}
    assert all(v.split("+")[-1] in corpus_mod.TEST_VARIANTS for e, v in voices["test"] if e == "espeak-ng")


@needs_engines
def test_same_seed_same_plan_and_failures_are_skipped(tiny, tmp_path, monkeypatch):
    out, _ = tiny
    reference = _plan_view(out)
    # same seed elsewhere: same ids, texts, voices and engines; another seed: another plan
    build(tmp_path / "again")
    assert _plan_view(tmp_path / "again") == reference
    build(tmp_path / "other", seed=4)
    assert _plan_view(tmp_path / "other") != reference

    # one sentence that the engines cannot say is skipped, logged, counted, and replaced
    victim = reference["train"][1][1]
    for cls in (tts.EspeakEngine, tts.FliteEngine):
        real = cls.synthesize

        def broken(self, text, *a, _real=real, **k):
            if text == victim:
                raise RuntimeError("engine exploded")
            return _real(self, text, *a, **k)

        monkeypatch.setattr(cls, "synthesize", broken)
    summary = build(tmp_path / "failing")
    got = _plan_view(tmp_path / "failing")
    assert summary["failures"] == 1 and summary["splits"]["train"]["failures"] == 1
    assert summary["failed"][0]["text"] == victim and "engine exploded" in summary["failed"][0]["error"]
    assert victim not in {t for _, t, _, _ in got["train"]} and len(got["train"]) == 6
    assert got["train"][0] == reference["train"][0] and got["train"][1] == reference["train"][2]
    assert got["valid"] == reference["valid"] and got["test"] == reference["test"]


@needs_engines
def test_resume_extend_and_folder_protection(tmp_path, monkeypatch):
    out = tmp_path / "c"
    build(out, num_utterances=8)
    first = _plan_view(out)
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("audio/*/*.wav")}

    # an interrupted build: manifests lost, a partial manifest left -> done utterances are kept,
    # also when the build is resumed with a relative --out (paths stay relative to the manifest)
    (out / "train.jsonl").rename(out / "train.jsonl.partial")
    monkeypatch.chdir(tmp_path)
    build(Path("c"), num_utterances=8)
    monkeypatch.undo()
    assert _plan_view(out) == first
    assert all(Path(e["audio"]).is_file() for s in first for e in read_manifest(out / f"{s}.jsonl"))
    assert '"audio": "audio/train/' in (out / "train.jsonl").read_text().splitlines()[0]
    assert {p: p.stat().st_mtime_ns for p in out.glob("audio/*/*.wav")} == mtimes

    # nothing is made again when everything exists; more utterances extend the same streams
    monkeypatch.setattr(corpus_mod, "render_utterance", lambda plan: pytest.fail("re-synthesized " + plan["id"]))
    build(out, num_utterances=8)
    monkeypatch.undo()
    build(out, num_utterances=16)
    bigger = _plan_view(out)
    assert all(bigger[s][: len(first[s])] == first[s] for s in first)
    assert sum(len(v) for v in bigger.values()) == 16

    with pytest.raises(TokenLMError, match="other settings.*overwrite"):
        build(out, num_utterances=8, seed=9)
    build(out, num_utterances=8, seed=9, overwrite=True)
    assert sum(len(v) for v in _plan_view(out).values()) == 8
    assert len(list(out.glob("audio/*/*.wav"))) == 8  # the old audio is gone
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(TokenLMError, match="not a tokenlm corpus"):
        build(tmp_path / "mine")
    with pytest.raises(TokenLMError, match="refusing"):
        build(tmp_path / "mine", overwrite=True)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


@needs_engines
def test_hours_target_and_worker_processes(tmp_path):
    summary = build(tmp_path / "h", num_utterances=None, hours=0.008, workers=2)
    assert summary["workers"] == 2
    for split, frac in (("train", 0.5), ("valid", 0.25), ("test", 0.25)):
        entries = read_manifest(tmp_path / "h" / f"{split}.jsonl")
        seconds = sum(e["duration"] for e in entries)
        target = 0.008 * 3600 * frac
        assert seconds >= target and seconds - entries[-1]["duration"] < target  # stops at the target
    # the same command again gives the same files, byte for byte (tasks go to workers in rotation)
    build(tmp_path / "h2", num_utterances=None, hours=0.008, workers=2)
    for split in ("train", "valid", "test"):
        assert (tmp_path / "h" / f"{split}.jsonl").read_text() == (tmp_path / "h2" / f"{split}.jsonl").read_text()
    for wav in (tmp_path / "h").glob("audio/*/*.wav"):
        assert wav.read_bytes() == (tmp_path / "h2" / wav.relative_to(tmp_path / "h")).read_bytes()
    # in this process: the same plans (espeak-ng audio may be a few samples apart)
    build(tmp_path / "h0", num_utterances=None, hours=0.008, workers=0)
    assert _plan_view(tmp_path / "h0")["train"][:3] == _plan_view(tmp_path / "h")["train"][:3]


def _cli():
    spec = importlib.util.spec_from_file_location("build_corpus_cli", ROOT / "recipes" / "build_corpus.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_cli_help_and_errors(capsys, tmp_path):
    cli = _cli()
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    help_text = capsys.readouterr().out
    for flag in ("--out", "--hours", "--num-utterances", "--seed", "--workers", "--max-words", "--from-folder",
                 "--transcripts", "--overwrite", "--text-file"):
        assert flag in help_text
    with pytest.raises(SystemExit) as e:
        cli.main(["--out", str(tmp_path)])
    assert e.value.code == 2
    assert "give --hours or --num-utterances" in capsys.readouterr().err
    assert cli.main(["--out", str(tmp_path / "x"), "--from-folder", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"build_corpus: error: {tmp_path / 'missing'}: no such folder"]


def test_cli_from_folder(capsys, tmp_path):
    rec = tmp_path / "rec" / "spk"
    rec.mkdir(parents=True)
    sf.write(rec / "u1.wav", np.zeros(8000, np.float32), 16000)
    (rec / "u1.txt").write_text("Hello world.")
    assert _cli().main(["--out", str(tmp_path / "out"), "--from-folder", str(tmp_path / "rec"), "--split", "test"]) == 0
    (e,) = read_manifest(tmp_path / "out" / "test.jsonl")
    assert (e["id"], e["text"], e["voice"], e["split"], e["duration"]) == ("spk/u1", "Hello world.", "spk", "test", 0.5)
    assert "1 files" in capsys.readouterr().out


@needs_engines
def test_cli_builds(capsys, tmp_path):
    out = tmp_path / "c"
    code = _cli().main(["--out", str(out), "--num-utterances", "4", "--workers", "0", "--no-progress",
                        "--no-default-text", "--text-file", str(_sentences_file(tmp_path)),
                        "--valid-fraction", "0.25", "--test-fraction", "0.25"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "4 utterances" in printed and "train" in printed
    assert sum(len(read_manifest(out / f"{s}.jsonl")) for s in ("train", "valid", "test")) == 4


def _sentences_file(tmp_path):
    p = tmp_path / "sentences.txt"
    p.write_text("\n".join(SENTENCES) + "\n")
    return p


@needs_engines
@pytest.mark.parametrize("engine,voice,pause", [("flite", "kal16", "pau"), ("espeak-ng", "en-us", "_")])
def test_phone_timings_tile_the_words(engine, voice, pause):
    text = "The quick brown fox jumps over the lazy dog."
    wav, words, phones = tts.get_engine(engine).synthesize(text, voice, phones=True)
    dur = wav.shape[-1] / tts.SAMPLE_RATE
    assert len(phones) >= 25 and all(0 <= p["start"] < p["end"] <= dur + 1e-6 for p in phones)
    assert all(a["end"] <= b["start"] + 1e-6 for a, b in zip(phones, phones[1:]))  # in order, no overlap
    sounding = [p for p in phones if not p["phone"].startswith(pause)]
    assert len(sounding) >= 25
    # every word holds at least one sounding phone's midpoint (the two come from different events)
    for w in words:
        assert any(w["start"] - 0.06 <= (p["start"] + p["end"]) / 2 <= w["end"] + 0.06 for p in sounding), w
    again = tts.get_engine(engine).synthesize(text, voice)[1]  # the words do not depend on it (espeak-ng
    assert [w["word"] for w in again] == [w["word"] for w in words]  # varies by a few ms from call to call)
    assert all(abs(a["start"] - b["start"]) < 0.02 for a, b in zip(again, words))


@needs_engines
def test_corpus_with_phones_moves_them_with_the_words(tmp_path):
    summary = build(tmp_path / "c", num_utterances=4, phones=True)
    assert summary["settings"]["phones"] is True
    entries = read_manifest(tmp_path / "c" / "train.jsonl")
    assert entries
    for e in entries:
        ph = e["phones"]
        assert ph and all(0 <= p["start"] < p["end"] <= e["duration"] + 1e-3 for p in ph)
        mids = [(p["start"] + p["end"]) / 2 for p in ph if p["phone"] not in ("pau",) and not p["phone"].startswith("_")]
        first, last = e["words"][0], e["words"][-1]
        assert min(mids) >= first["start"] - 0.06 and max(mids) <= last["end"] + 0.06  # shifted with the lead silence
    plain = read_manifest(build(tmp_path / "p", num_utterances=4) and tmp_path / "p" / "train.jsonl")
    assert "phones" not in plain[0]
