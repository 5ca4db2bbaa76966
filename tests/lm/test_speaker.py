"""Speaker.speak's frame bookkeeping, with the LM's sampling replaced by a scripted streamer."""

from types import SimpleNamespace

import pytest
import torch

import tokenlm.lm.tasks as tasks
from tokenlm.errors import TokenLMError
from tokenlm.lm.evaluation import wer
from tokenlm.lm.streams import UNGENERATED


class ScriptedStreamer:
    """Emits EPAD whenever the text is the model's to choose, and code 0 on every audio stream."""

    def __init__(self, model, batch, sampling=None, generator=None):
        self.epad = model.streams[0].epad_id

    def start(self):
        pass

    def step(self, provided, allowed=None):
        out = torch.zeros_like(provided)
        out[:, 0] = torch.where(provided[:, 0] == UNGENERATED, torch.full_like(provided[:, 0], self.epad),
                                provided[:, 0])
        return out


def test_speak_cut_by_the_length_limit_right_after_the_last_word(monkeypatch):
    # one word of n pieces: EPAD at frame 0, the pieces at 1..n, EPAD (the end) at n + 1; a length
    # limit that stops it before frame n + 1 + the largest delay leaves the later codebooks short of
    # the end. The cut must fall where every codebook has a frame, whatever the limit.
    monkeypatch.setattr(tasks, "LMStreamer", ScriptedStreamer)
    sp = tasks.Speaker("tts")
    delays = [s.delay for s in sp.streams if s.kind == "audio"]
    assert len(set(delays)) > 1  # codebooks at different delays: the case that needs care
    hop = round(sp.codec.sample_rate / sp.frame_rate)
    for seconds in [0.04 * i for i in range(1, 9)] + [None]:
        wav = sp.speak("cat", max_seconds=seconds)
        assert wav.dim() == 2 and wav.shape[-1] % hop == 0 and wav.shape[-1] >= hop
        assert torch.isfinite(wav).all()


def test_speech_goes_on_for_the_tail_after_the_end_mark(monkeypatch):
    # "cat": EPAD at frame 0, its n phones at 1..n, the end mark at n + 1: frames 0..n + 1, then
    # the tail (the model's own frames after the mark, text PAD) of round(tail * frame rate) frames.
    monkeypatch.setattr(tasks, "LMStreamer", ScriptedStreamer)
    sp = tasks.Speaker("tts", tail_seconds=0)
    hop = round(sp.codec.sample_rate / sp.frame_rate)
    n = len(sp.tokenizer.encode_word("cat"))
    assert sp.speak("cat").shape[-1] == (n + 2) * hop
    for tail in (tasks.TTS_TAIL_SECONDS, 0.2):
        sp.tail_seconds = tail
        frames = round(tail * sp.frame_rate)
        assert frames > 0 and sp.speak("cat").shape[-1] == (n + 2 + frames) * hop
    assert tasks.Speaker("tts").tail_seconds == tasks.TTS_TAIL_SECONDS > 0
    with pytest.raises(TokenLMError, match="tail_seconds"):
        tasks.Speaker("tts", tail_seconds=-0.1)


def test_long_texts_split_into_sentences_and_parts_that_fit():
    split = tasks.split_for_speech
    para = ("The weather was cold and grey all morning. We walked down to the harbour to watch the boats come in. "
            "By noon the sun came out! Everyone agreed it had been a lovely day after all.")
    assert split(para) == ["The weather was cold and grey all morning.",
                           "We walked down to the harbour to watch the boats come in.", "By noon the sun came out!",
                           "Everyone agreed it had been a lovely day after all."]
    # fewer than 3 words stay with their neighbour: these (test sentences) are spoken whole
    for whole in ("Who cares? six, or maybe four, or else three.", "Hello.", "?!",
                  "The time for all Whos who have blood that is red to come to the aid of their country! he said."):
        assert split(whole) == [whole]
    assert split('He said "Stop." Then he left the room.') == ['He said "Stop."', "Then he left the room."]
    # a sentence over max_words: cut at the comma nearest its middle, else at its middle word
    long = " ".join(f"w{i}" for i in range(30))
    assert split(long, max_words=25) == [" ".join(f"w{i}" for i in range(15)), " ".join(f"w{i}" for i in range(15, 30))]
    commas = "a b c d e f g h i j, k l m n o p q r s t u v w x y z aa bb"
    assert split(commas, max_words=25) == ["a b c d e f g h i j,", "k l m n o p q r s t u v w x y z aa bb"]
    pieces = split(" ".join(["w"] * 100), max_words=25)
    assert all(len(p.split()) <= 25 for p in pieces) and sum(len(p.split()) for p in pieces) == 100
    with pytest.raises(TokenLMError, match="max_words"):
        split("a b", max_words=0)


def test_speaker_speaks_a_long_text_piece_by_piece(monkeypatch):
    monkeypatch.setattr(tasks, "LMStreamer", ScriptedStreamer)  # deterministic: the frame count is the check
    sp = tasks.Speaker("tts")
    sentence = "we walked down to the harbour to watch the boats come in"
    text = ". ".join([sentence] * 3) + "."
    assert len(text.split()) > sp.max_words == tasks.TTS_MAX_WORDS
    pieces = tasks.split_for_speech(text, sp.max_words)
    assert len(pieces) == 3
    whole = sp.speak(text)
    assert whole.shape[-1] == sum(sp.speak(p).shape[-1] for p in pieces)
    long_short = sp.speak_batch([text, sentence])  # a long text's pieces are rows of the batch
    assert [w.shape[-1] for w in long_short] == [whole.shape[-1], sp.speak(sentence).shape[-1]]
    sp.max_words = 1000  # in one go: one utterance, a single end (no second lead-in and tail)
    assert sp.speak(text).shape[-1] < whole.shape[-1]


class ScriptedJudge:
    """Hears the i-th take as ``heard[i]``; reads codes when it shares the TTS's codec, else audio."""

    def __init__(self, codec_info, heard, q=8):
        self.lm = SimpleNamespace(codec_info=codec_info)
        self.q, self.heard, self.inputs = q, heard, []

    def _words(self, i):
        return [tasks.Word(w, 0.0, 0.0) for w in self.heard[i].split()]

    def transcribe_codes(self, codes):
        self.inputs += codes
        return [self._words(i) for i in range(len(codes))]

    def transcribe(self, wav, sample_rate):
        self.inputs.append(wav)
        return self._words(len(self.inputs) - 1)


def test_candidates_keep_the_take_the_judge_hears_best_first_on_a_tie():
    sp = tasks.Speaker("tts")
    for heard, best in ((["a cat", "cat", "the cat sat"], 1), (["dog", "cat", "cat"], 1), (["cat", "cat"], 0)):
        sp._judge = judge = ScriptedJudge(sp.lm.codec_info, heard)
        takes = sp.takes("cat", len(heard), seed=3, max_seconds=1.0)
        assert [t.heard for t in takes] == heard
        assert [t.errors for t in takes] == [wer(["cat"], [h]) for h in heard]
        assert all(t.codes.shape[0] == sp.q for t in takes)
        # the judge read the sampled codes themselves (same codec): no decode and re-encode
        assert len(judge.inputs) == len(heard) and all(torch.equal(a, t.codes) for a, t in zip(judge.inputs, takes))
        wav = sp.speak("cat", candidates=len(heard), seed=3, max_seconds=1.0)
        assert torch.equal(wav, sp._decode(takes[best].codes))  # the same batch, the same seed: the same takes
    assert not torch.equal(takes[0].codes, takes[1].codes)  # the takes are different samples


def test_a_judge_on_another_codec_hears_the_decoded_audio():
    sp = tasks.Speaker("tts")
    sp._judge = judge = ScriptedJudge({"fingerprint": "another codec"}, ["cat", "hat"])
    takes = sp.takes("cat", 2, seed=0, max_seconds=1.0)
    assert [t.errors for t in takes] == [0.0, 1.0]
    assert [w.shape for w in judge.inputs] == [sp._decode(t.codes).shape for t in takes]


def test_candidates_below_one_is_an_error():
    sp = tasks.Speaker("tts", judge="no such model: never loaded")
    with pytest.raises(TokenLMError, match="candidates must be >= 1"):
        sp.speak("cat", candidates=0)


def test_the_bundled_asr_judges_real_takes():
    sp = tasks.Speaker("tts")
    takes = sp.takes("the cat sat on the mat", 2, seed=0)
    assert sp.judge.lm.task == "asr"
    for t in takes:
        assert t.errors == wer(["the cat sat on the mat"], [t.heard]) and t.errors < 1.0


def test_cli_speak_candidates(tmp_path, capsys):
    import soundfile as sf

    from tokenlm.cli import main as cli

    out = tmp_path / "best.wav"
    assert cli(["speak", "The cat sat.", "-o", str(out), "--candidates", "2"]) == 0
    assert sf.info(str(out)).frames > 0
    capsys.readouterr()
    assert cli(["speak", "The cat sat.", "-o", str(tmp_path / "x.wav"), "--candidates", "0"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "tokenlm: error: --candidates must be >= 1, got 0"
    assert not (tmp_path / "x.wav").exists()


def test_tts_sampling_is_greedy_timing_and_sampled_speech_by_default(monkeypatch):
    sp = tasks.Speaker("tts")
    got = tasks.tts_sampling(sp.streams)
    kinds = [sp.streams[i].kind for i in sp.streams.generated]
    assert kinds[0] == "text" and set(kinds[1:]) == {"audio"} and len(got) == len(kinds)
    assert got[0].temperature == tasks.TTS_TIMING_TEMPERATURE == 0.0  # greedy: where each word starts
    assert all((s.temperature, s.top_k) == (tasks.TTS_TEMPERATURE, tasks.TTS_TOP_K) for s in got[1:])
    hot = tasks.tts_sampling(sp.streams, 0.9, 20, timing_temperature=0.3)
    assert (hot[0].temperature, hot[0].top_k) == (0.3, 0)
    assert all((s.temperature, s.top_k) == (0.9, 20) for s in hot[1:])
    with pytest.raises(TokenLMError, match="must be >= 0"):
        tasks.tts_sampling(sp.streams, timing_temperature=-1)

    seen = []  # what Speaker.speak hands the streamer
    monkeypatch.setattr(tasks, "LMStreamer", lambda model, b, sampling=None, generator=None:
                        seen.append(sampling) or ScriptedStreamer(model, b))
    sp.speak("cat", max_seconds=0.2)
    sp.speak("cat", temperature=0.9, top_k=20, timing_temperature=0.3, max_seconds=0.2)
    assert seen == [got, hot]


def test_cli_speak_sampling_defaults_are_the_library_defaults(tmp_path, capsys):
    from tokenlm.cli import build_parser
    from tokenlm.cli import main as cli

    args = build_parser().parse_args(["speak", "cat", "-o", "x.wav"])
    assert (args.temperature, args.top_k, args.timing_temperature, args.tail_seconds) == (
        tasks.TTS_TEMPERATURE, tasks.TTS_TOP_K, tasks.TTS_TIMING_TEMPERATURE, tasks.TTS_TAIL_SECONDS)
    assert cli(["speak", "cat", "-o", str(tmp_path / "x.wav"), "--timing-temperature", "-0.5"]) == 1
    assert capsys.readouterr().err.strip() == (
        "tokenlm: error: --temperature, --timing-temperature, --top-k and --tail-seconds must be >= 0")
    assert cli(["speak", "cat", "-o", str(tmp_path / "x.wav"), "--tail-seconds", "-1"]) == 1
    assert "--tail-seconds must be >= 0" in capsys.readouterr().err
    assert not (tmp_path / "x.wav").exists()
