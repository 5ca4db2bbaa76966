"""ASR and TTS on top of the token LM and the codec.

- :class:`Transcriber`: speech to words with times. Offline (:meth:`Transcriber.transcribe`,
  batched :meth:`Transcriber.transcribe_codes`) and streaming (:meth:`Transcriber.session`: push
  audio as it comes, get each word once it is final).
- :class:`Speaker`: text to speech. The text stream leads: the model decides where each word
  starts by sampling PAD or EPAD, the word's pieces are then forced, and the audio follows a few
  frames behind; after the last word the model's next EPAD marks the end of speech.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import asdict, dataclass

import torch

from ..errors import CodecError, TokenLMError
from .beam import BeamSearch, BeamSettings, beam_frame, beam_transcribe, lexicon_for
from .checkpoint import LoadedLM, load_lm
from .generate import LMStreamer, Sampling
from .streams import UNGENERATED, ZERO

__all__ = ["Word", "WordDecoder", "LexiconConstraint", "Transcriber", "Speaker", "load_codec_for", "greedy_transcribe",
           "tts_sampling", "split_for_speech", "split_at_pauses", "PauseCutter"]

# Transcriber.transcribe: a recording whose samples all stay below this (about 3 steps of 16-bit
# audio, -80 dBFS) is digital silence and has no words.
SILENCE_PEAK = 1e-4
# Transcriber.transcribe: longer recordings are transcribed in pieces of at most this long, cut at
# their quietest moments (the bundled ASR trained on crops of at most 10 s; a 23-s recording of eight
# test sentences read 35% WER in one piece, 24% sentence by sentence).
TRANSCRIBE_MAX_SECONDS = 10.0

# The TTS's default sampling (Speaker, `tokenlm speak`, the realtime TTS engine), chosen on the
# validation sentences (recipes/README.md, "Sampling the TTS"): the speech at a moderate
# temperature among the 50 likeliest codes, the word timing greedy.
TTS_TEMPERATURE = 0.5
TTS_TOP_K = 50
TTS_TIMING_TEMPERATURE = 0.0
# Speech goes on this long after the TTS's end-of-speech mark (the end of the last word): the last
# sound's release and some silence, as the training utterances have (flite: ~0.1 s).
TTS_TAIL_SECONDS = 0.12
# The most words Speaker speaks in one go: longer texts are spoken sentence by sentence (and a long
# sentence in parts), since the TTS trained on crops of at most 8 s (~22 words of kal16) and its
# speech falls apart well past that (a 4-sentence, 18-s paragraph read 53% WER, the same sentences
# one at a time 14%).
TTS_MAX_WORDS = 25
_SENTENCE_END = re.compile(r"""(?<=[.!?])\s+|(?<=[.!?]['")\]])\s+""")


def tts_sampling(streams, temperature: float = TTS_TEMPERATURE, top_k: int = TTS_TOP_K,
                 timing_temperature: float = TTS_TIMING_TEMPERATURE) -> list[Sampling]:
    """Per generated stream sampling for a TTS: the text stream (which in a TTS only chooses, frame by
    frame, between waiting and starting the next word) at ``timing_temperature`` (0: greedy), the
    audio codebooks at ``temperature`` among the ``top_k`` likeliest codes."""
    if temperature < 0 or timing_temperature < 0 or top_k < 0:
        raise TokenLMError(f"temperatures and top-k must be >= 0, got temperature {temperature}, "
                           f"timing temperature {timing_temperature}, top-k {top_k}")
    text, audio = Sampling(temperature=timing_temperature), Sampling(temperature=temperature, top_k=top_k)
    return [text if streams[i].kind == "text" else audio for i in streams.generated]


@dataclass
class Word:
    word: str
    start: float
    end: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Take:
    """One sampled take of a sentence (:meth:`Speaker.takes`): its codes ``[Q, F]``, what the
    judge ASR heard, and that transcript's word error rate against the text."""

    codes: torch.Tensor
    heard: str
    errors: float


def load_codec_for(lm: LoadedLM, codec=None, device="cpu"):
    """The codec an LM was trained on, checked by token fingerprint (a codec with a retrained
    decoder but the same encoder and codebooks is fine): the checkpoint's own (``codec/`` in its
    folder: the decoder fine-tuned on a TTS's voice) if it ships one, else the codec it names (by
    token fingerprint among the bundled codecs when that name now means another codec)."""
    import warnings

    import tokenlm.codecs as tc

    info = lm.codec_info
    own = getattr(lm, "codec_path", None) if codec is None else None
    if own is not None:
        codec = tc.load(own)
    elif codec is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            codec = tc.load(info.get("name", "default"))
            if info.get("fingerprint") and codec.token_fingerprint != info["fingerprint"]:
                # the name has moved on (a newer default): the bundled codec with its codes, if any
                other = tc.bundled_for_tokens(info["fingerprint"])
                codec = tc.load(other) if other else codec
    if info.get("fingerprint") and codec.token_fingerprint != info["fingerprint"]:
        where = f"{own}: " if own is not None else ""
        raise CodecError(f"{where}this LM was trained on the tokens of codec {info['fingerprint']} ({info.get('name')}), "
                         f"not on those of {codec.token_fingerprint}: its tokens would be meaningless")
    return codec.to(device).eval()


class WordDecoder:
    """Text-stream tokens (aligned frames) -> words. A word is final when the next one starts
    (or at :meth:`flush`); its end is the frame where the next word's EPAD sits (or its last piece)."""

    def __init__(self, tokenizer, frame_rate: float):
        self.tok, self.fr = tokenizer, frame_rate
        self.card = tokenizer.vocab_size
        self.pieces: list[int] = []
        self.start = 0
        self.last = 0
        self.boundary: int | None = None

    def _emit(self, end_frame: int) -> list[Word]:
        if not self.pieces:
            return []
        text = self.tok.spell(self.pieces)
        self.pieces = []
        start, end = round(self.start / self.fr, 3), round(max(end_frame, self.start + 1) / self.fr, 3)
        return [Word(w, start, end) for w in text.split()]

    def push(self, frame: int, token: int) -> list[Word]:
        out: list[Word] = []
        if token == self.card + 1:  # EPAD: the current word is over
            out = self._emit(frame)
            self.boundary = frame
        elif 0 <= token < self.card:
            if self.pieces and self.tok.starts_word(token) and self.boundary is None:
                out = self._emit(frame)
            if not self.pieces:
                self.start = frame
            self.pieces.append(token)
            self.last = frame
            self.boundary = None
        return out

    def flush(self) -> list[Word]:
        return self._emit(self.last + 1)


class LexiconConstraint:
    """Keeps a phone ASR's text stream on the words of its lexicon: after EPAD only phones that begin
    a pronunciation (or PAD), inside a word only phones that continue one, and PAD/EPAD only once
    the phones so far make a whole word. The model's most likely phone among those allowed wins, so
    every word it writes is spelled exactly (no nearest-word guess afterwards). One per batch; each
    row keeps its own place in the pronunciation trie. Off by default: on the phone ASR's validation
    utterances it read worse than free phones spelled afterwards (:meth:`PhoneTokenizer.spell`),
    forcing words where the model heard none."""

    def __init__(self, tokenizer, batch_size: int):
        self.card = tokenizer.vocab_size
        self.pad, self.epad = self.card, self.card + 1
        ids = {p: i for i, p in enumerate(tokenizer.phones)}
        self.children: list[dict[int, int]] = [{}]
        self.whole: list[bool] = [False]
        for pron in tokenizer.lexicon.values():
            node = 0
            for ph in pron.split():
                nxt = self.children[node].get(ids[ph])
                if nxt is None:
                    nxt = len(self.children)
                    self.children[node][ids[ph]] = nxt
                    self.children.append({})
                    self.whole.append(False)
                node = nxt
            self.whole[node] = node != 0
        self.state: list[int | None] = [None] * batch_size  # None: between words; else a trie node
        self._masks: dict[int | None, torch.Tensor] = {}

    def _mask(self, node: int | None) -> torch.Tensor:
        if node not in self._masks:
            m = torch.zeros(self.card + 2, dtype=torch.bool)
            if node is None:
                m[[self.pad, self.epad]] = True
            else:
                m[list(self.children[node])] = True
                if node == 0 or self.whole[node]:
                    m[self.pad] = True
                if self.whole[node]:
                    m[self.epad] = True
            self._masks[node] = m
        return self._masks[node]

    def allowed(self) -> torch.Tensor:
        """``[B, card + 2]``: what each row may write next."""
        return torch.stack([self._mask(n) for n in self.state])

    def update(self, row: int, token: int) -> None:
        node = self.state[row]
        if token == self.epad:
            self.state[row] = 0
        elif token == self.pad or not 0 <= token < self.card:
            self.state[row] = None
        else:
            self.state[row] = self.children[node or 0].get(token, 0)


def lexicon_constraint(tokenizer, batch_size: int) -> LexiconConstraint | None:
    """The constraint for a phone tokenizer with a lexicon; None for sentencepiece pieces."""
    return LexiconConstraint(tokenizer, batch_size) if getattr(tokenizer, "lexicon", None) else None


@torch.no_grad()
def greedy_transcribe(model, tokenizer, items: list[torch.Tensor], frame_rate: float,
                      constrain: bool = False) -> list[list[Word]]:
    """Greedy streaming transcription of a batch of ``codes [Q, F]`` with an ASR-layout model
    (text stream first, then the audio codebooks it reads). ``constrain``: a phone ASR writes only
    its lexicon's words (:class:`LexiconConstraint`); without, its phones are spelled afterwards."""
    streams = model.streams
    delay, q = streams[0].delay, sum(1 for s in streams if s.kind == "audio")
    b, k = len(items), len(streams)
    st = LMStreamer(model, b)
    st.start()
    decoders = [WordDecoder(tokenizer, frame_rate) for _ in items]
    lex = lexicon_constraint(tokenizer, b) if constrain else None
    words: list[list[Word]] = [[] for _ in items]
    lengths = [c.shape[1] for c in items]
    for t in range(max(lengths) + delay):
        provided = torch.full((b, k), ZERO, dtype=torch.long)
        for j, c in enumerate(items):
            if t < lengths[j]:
                provided[j, 1: 1 + q] = c[:q, t].cpu()
        provided[:, 0] = UNGENERATED if t >= delay else streams[0].pad_id
        tokens = st.step(provided, allowed={0: lex.allowed()} if lex and t >= delay else None).cpu()
        if t >= delay:
            for j in range(b):
                if lex:
                    lex.update(j, int(tokens[j, 0]))
                if t - delay < lengths[j]:
                    words[j] += decoders[j].push(t - delay, int(tokens[j, 0]))
    for j in range(b):
        words[j] += decoders[j].flush()
    return words


def resolve_word_lm(lm: LoadedLM, word_lm=None):
    """The word language model a phone ASR decodes with: ``word_lm`` an ARPA file or an
    :class:`~tokenlm.lm.wordlm.NGramLM`; None for the checkpoint's own ``words.arpa.gz`` (or none
    when it ships none); False or "none": none."""
    from .wordlm import NGramLM

    if word_lm is False or (isinstance(word_lm, str) and word_lm.lower() == "none"):
        return None
    if isinstance(word_lm, NGramLM):
        return word_lm
    path = word_lm if word_lm is not None else lm.word_lm_path
    if path is None or not getattr(lm.tokenizer, "lexicon", None):
        if word_lm is not None:
            raise TokenLMError("a word language model needs a phone ASR (a tokenizer with a lexicon)")
        return None
    return NGramLM.load(path)


def split_at_pauses(wav: torch.Tensor, sample_rate: int, max_seconds: float = TRANSCRIBE_MAX_SECONDS,
                    min_seconds: float = 3.0) -> list[tuple[int, int]]:
    """``(start, end)`` sample spans of ``wav [C, T]``, each at most ``max_seconds`` long, cut at the
    quietest 100 ms (RMS) between ``min_seconds`` and ``max_seconds`` after the previous cut: the
    pauses between words. A recording that fits is one span."""
    n = wav.shape[-1]
    if n <= max_seconds * sample_rate:  # max_seconds may be inf: one piece
        return [(0, n)]
    limit = int(max_seconds * sample_rate)
    hop = max(1, sample_rate // 100)  # 10 ms
    power = wav.float().pow(2).mean(0)[: n // hop * hop].reshape(-1, hop).mean(1)
    smooth = torch.nn.functional.avg_pool1d(power[None, None], 11, 1, 5, count_include_pad=False)[0, 0]
    spans, start = [], 0
    while n - start > limit:
        lo = (start + int(min_seconds * sample_rate)) // hop
        hi = min(start + limit, n - int(min_seconds * sample_rate)) // hop  # leave the last span min_seconds
        cut = (lo + int(torch.argmin(smooth[lo:hi]))) * hop if hi > lo else start + limit
        spans.append((start, cut))
        start = cut
    return spans + [(start, n)]



class PauseCutter:
    """Where a streaming ASR session starts a fresh LM context, as :func:`split_at_pauses` cuts a
    file: the ASR trained on crops of at most 10 s and its sliding window reads worse past that
    (28-s recordings of eight test sentences: 44% WER in one context, 37% in pieces).

    Fed one power value (mean square of the frame's samples) per audio frame, it answers, ``lookahead``
    frames late, whether to cut before a frame: once the current piece is ``min_seconds`` long, at a
    frame whose power (smoothed over three frames) is the lowest from 5 frames before it to the
    newest and at most ``quiet`` times the loudest of the piece (-20 dB); once it is ``max_seconds``
    long, ``quiet_late`` (-10 dB) will do. Speech that never pauses so is not cut (the LM's sliding
    window goes on). ``max_seconds`` inf: never cuts. A frame without audio (``audio=False``: the
    flush at a session's end) counts as silence but no cut falls before it."""

    def __init__(self, frame_rate: float, lookahead: int, min_seconds: float = 3.0,
                 max_seconds: float = TRANSCRIBE_MAX_SECONDS, quiet: float = 0.01, quiet_late: float = 0.1):
        if lookahead < 1:
            raise TokenLMError(f"lookahead must be >= 1 frame, got {lookahead}")
        self.lookahead, self.quiet, self.quiet_late = lookahead, quiet, quiet_late
        self.min_frames = int(round(min_seconds * frame_rate))
        self.max_frames = max_seconds * frame_rate
        self.power: list[float] = []  # the newest frames' power (from index self.first)
        self.audio: list[bool] = []
        self.first = 0
        self.origin = 0  # the current piece's first frame
        self.level = 0.0  # the loudest smoothed power of the piece so far

    def _smooth(self, i: int) -> float:
        lo, hi = max(i - 1, self.first), min(i + 1, self.first + len(self.power) - 1)
        vals = self.power[lo - self.first: hi - self.first + 1]
        return sum(vals) / len(vals)

    def push(self, power: float, audio: bool = True) -> int | None:
        """The power of the next frame; returns the frame (counted from 0) before which to cut, or None."""
        self.power.append(float(power) if audio else 0.0)
        self.audio.append(audio)
        s = self.first + len(self.power) - 1  # the newest frame
        if s - 1 >= self.origin:
            self.level = max(self.level, self._smooth(s - 1))
        r = s - self.lookahead
        keep = self.lookahead + 8
        if len(self.power) > keep:
            del self.power[: len(self.power) - keep], self.audio[: len(self.audio) - keep]
            self.first = s - keep + 1
        if self.max_frames == float("inf") or r - self.origin < self.min_frames or \
                not all(self.audio[r - self.first:]):
            return None
        here = self._smooth(r)
        thr = self.quiet_late if r - self.origin >= self.max_frames else self.quiet
        if here > thr * self.level or any(self._smooth(i) < here for i in range(max(r - 5, self.first), s)):
            return None
        self.origin = r
        self.level = max(self._smooth(i) for i in range(r, s))
        return r


class Transcriber:
    def __init__(self, lm: LoadedLM | str = "asr", codec=None, device: str | torch.device = "cpu",
                 quantize: str | None = None, constrain: bool = False, beam: int | BeamSettings | None = None,
                 word_lm=None):
        """``quantize="int8"``: weight-only int8 LM (faster single-session streaming on a CPU).
        ``constrain``: a phone ASR writes only the words of its lexicon (:class:`LexiconConstraint`).

        Offline decoding (:meth:`transcribe`, :meth:`transcribe_codes`) of a phone ASR is a beam
        search with its lexicon and a word language model (:func:`~tokenlm.lm.beam.beam_transcribe`)
        when it has one: ``word_lm`` is an ARPA file, an :class:`~tokenlm.lm.wordlm.NGramLM`, or None
        for the checkpoint's own ``words.arpa.gz`` (False: none). ``beam``: its width (or the full
        :class:`~tokenlm.lm.beam.BeamSettings`); 0 decodes greedily; None: the default width when
        there is a language model, else greedy. Streaming sessions (:meth:`session`) are greedy."""
        self.lm = load_lm(lm, device, quantize) if not isinstance(lm, LoadedLM) else lm
        if self.lm.task != "asr":
            raise TokenLMError(f"this LM was trained for '{self.lm.task}', not for speech recognition (asr)")
        self.model, self.tokenizer, self.device = self.lm.model, self.lm.tokenizer, torch.device(device)
        self.codec = load_codec_for(self.lm, codec, device)
        self.streams = self.model.streams
        self.q = self.lm.codec_info.get("num_codebooks", self.codec.num_codebooks)
        self.delay = self.streams[0].delay
        self.frame_rate = self.codec.frame_rate
        self.constrain = constrain
        self.max_seconds = TRANSCRIBE_MAX_SECONDS  # transcribe: longer recordings in pieces (split_at_pauses)
        self.word_lm = resolve_word_lm(self.lm, word_lm)
        if isinstance(beam, BeamSettings):
            self.beam: BeamSettings | None = beam
        elif beam is None:
            self.beam = BeamSettings() if self.word_lm is not None else None
        elif beam < 0:
            raise TokenLMError(f"beam width must be >= 0, got {beam}")
        else:
            self.beam = BeamSettings(beam=beam) if beam > 0 else None
        if self.beam is not None and not getattr(self.tokenizer, "lexicon", None):
            raise TokenLMError("beam search needs a phone ASR (a tokenizer with a lexicon); this one writes "
                               "sentencepiece pieces: use beam=0")
        if self.beam is not None and constrain:
            raise TokenLMError("constrained decoding is greedy: use beam=0 with constrain=True")

    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """``wav [C, T]`` (codec rate) -> codes ``[Q, F]``."""
        return self.codec.encode(wav[None].to(self.device), num_codebooks=self.q)[0]

    def transcribe(self, audio, sample_rate: int | None = None) -> list[Word]:
        """Words of a file path or a ``[C, T]`` tensor at ``sample_rate`` (resampled as needed).
        Digital silence (no sample above ``SILENCE_PEAK``) has no words: the model, trained on
        speech, would otherwise take it for a short word."""
        wav = self._load(audio, sample_rate)
        if wav.numel() == 0 or wav.abs().max() < SILENCE_PEAK:
            return []
        sr = self.codec.sample_rate
        spans = [(a, b) for a, b in split_at_pauses(wav, sr, self.max_seconds)
                 if wav[:, a:b].abs().max() >= SILENCE_PEAK]
        words = self.transcribe_codes([self.encode(wav[:, a:b]) for a, b in spans])
        return [dataclasses.replace(w, start=w.start + a / sr, end=w.end + a / sr)
                for (a, _), ws in zip(spans, words) for w in ws]

    def _load(self, audio, sample_rate):
        from ..audio import check_finite, convert_channels, load_audio, resample

        if isinstance(audio, torch.Tensor):
            wav = audio if audio.dim() == 2 else audio.reshape(1, -1)
            check_finite(wav)
            if sample_rate and sample_rate != self.codec.sample_rate:
                wav = resample(wav, sample_rate, self.codec.sample_rate)
            return convert_channels(wav.float(), self.codec.channels)
        wav, _ = load_audio(audio, self.codec.sample_rate, self.codec.channels)
        return wav

    @torch.no_grad()
    def transcribe_codes(self, codes: list[torch.Tensor], batch_size: int = 16) -> list[list[Word]]:
        """Batched transcription of ``codes [Q, F]`` items (beam search or greedy, see the class)."""
        out: list[list[Word]] = []
        for i in range(0, len(codes), batch_size):
            out += self._batch(codes[i: i + batch_size])
        return out

    def _batch(self, items: list[torch.Tensor]) -> list[list[Word]]:
        if self.beam is not None:
            return beam_transcribe(self.model, self.tokenizer, items, self.frame_rate, self.word_lm, self.beam)
        return greedy_transcribe(self.model, self.tokenizer, items, self.frame_rate, self.constrain)

    def session(self, beam: bool = False) -> TranscriberSession:
        """A streaming session: :meth:`TranscriberSession.push` audio, get final words back.
        Greedy by default (the fastest); ``beam=True``: the Transcriber's beam search (its
        settings, or the default width), each word written once every history agrees on it."""
        settings = None
        if beam:
            if not getattr(self.tokenizer, "lexicon", None):
                raise TokenLMError("beam search needs a phone ASR (a tokenizer with a lexicon)")
            settings = self.beam or BeamSettings()
        return TranscriberSession(self, settings)


class TranscriberSession:
    def __init__(self, tr: Transcriber, beam: BeamSettings | None = None):
        self.tr = tr
        self.beam = beam
        self.st = LMStreamer(tr.model, beam.beam if beam else 1)
        self.st.start()
        self.dec = WordDecoder(tr.tokenizer, tr.frame_rate)
        self.lex = lexicon_constraint(tr.tokenizer, 1) if tr.constrain else None
        if beam is not None:
            s0 = tr.streams[0]
            self.search = BeamSearch(lexicon_for(tr.tokenizer, tr.word_lm), beam, tr.tokenizer.vocab_size,
                                     s0.pad_id, s0.epad_id)
            self.emitted = 0
        self.t = 0
        self.origin = 0  # the frame the LM's current context started at
        self.cutter = PauseCutter(tr.frame_rate, tr.delay - 1, max_seconds=tr.max_seconds) if tr.delay > 1 else None
        self.recent: list[torch.Tensor] = []  # the newest frames' codes, replayed into a fresh context
        self._buf = torch.zeros(tr.codec.channels, 0)
        self._ctx = tr.codec.streaming(1)
        self._ctx.__enter__()
        self.hop = tr.codec.hop_length
        self.cuts: list[int] = []  # the frames fresh LM contexts started at

    def _beam_frame(self, codes: torch.Tensor | None) -> list[Word]:
        tr, w = self.tr, self.st.batch_size
        frame = torch.full((w, len(tr.streams)), ZERO, dtype=torch.long)
        if codes is not None:
            frame[:, 1: 1 + tr.q] = codes
        self.t += 1
        if self.t - self.origin <= tr.delay:
            frame[:, 0] = tr.streams[0].pad_id
            self.st.step(frame)
            return []
        beam_frame(self.st, tr.model, {0: self.search}, frame, w, self.beam.expand)
        n = self.search.stable_words()  # words every history agrees on are final
        if n <= self.emitted:
            return []
        out = self.search.words(n, tr.frame_rate)[self.emitted:]
        self.emitted = n
        return out

    def _frame(self, codes: torch.Tensor | None) -> list[Word]:
        if self.beam is not None:
            return self._beam_frame(codes)
        k = len(self.tr.streams)
        provided = torch.full((1, k), ZERO, dtype=torch.long)
        if codes is not None:
            provided[0, 1: 1 + self.tr.q] = codes
        text = self.t - self.origin >= self.tr.delay  # the delayed text stream has started
        provided[0, 0] = UNGENERATED if text else self.tr.streams[0].pad_id
        live = self.lex is not None and text
        tok = int(self.st.step(provided, allowed={0: self.lex.allowed()} if live else None)[0, 0])
        if live:
            self.lex.update(0, tok)
        words = self.dec.push(self.t - self.tr.delay, tok) if text else []
        self.t += 1
        return words

    def _restart(self, frame: int) -> None:
        """A fresh LM context from audio ``frame`` on (a pause): the text up to it is written; the
        audio since is replayed with the text stream's start padding, as at a session's start."""
        tr = self.tr
        self.st.start()
        self.origin = frame
        w = self.st.batch_size
        for codes in self.recent[len(self.recent) - (self.t - frame):]:
            provided = torch.full((w, len(tr.streams)), ZERO, dtype=torch.long)
            provided[:, 0] = tr.streams[0].pad_id
            provided[:, 1: 1 + tr.q] = codes
            self.st.step(provided)
        self.cuts.append(frame)

    @torch.no_grad()
    def push(self, wav: torch.Tensor) -> list[Word]:
        """Audio ``[C, T]`` at the codec's rate (any length); returns the words that became final."""
        self._buf = torch.cat([self._buf, wav.float().reshape(self._buf.shape[0], -1)], dim=1)
        n = self._buf.shape[1] // self.hop
        if n == 0:
            return []
        chunk, self._buf = self._buf[:, : n * self.hop], self._buf[:, n * self.hop:]
        codes = self.tr.codec.encode(chunk[None].to(self.tr.device), num_codebooks=self.tr.q)[0].cpu()
        power = chunk.float().pow(2).mean(0).reshape(-1, self.hop).mean(1).tolist()
        out: list[Word] = []
        for f in range(codes.shape[1]):
            out += self._frame(codes[:, f])
            if self.cutter is None:
                continue
            self.recent = (self.recent + [codes[:, f]])[-self.tr.delay:]
            cut = self.cutter.push(power[f])
            if cut is not None:
                self._restart(cut)
        return out

    @torch.no_grad()
    def finish(self) -> list[Word]:
        """End of audio: let the delayed text catch up and return the last words."""
        out: list[Word] = []
        if self._buf.shape[1]:
            pad = torch.zeros(self._buf.shape[0], self.hop - self._buf.shape[1])
            out += self.push(pad)
        for _ in range(self.tr.delay):
            out += self._frame(None)
        self._ctx.__exit__(None, None, None)
        if self.beam is not None:
            return out + self.search.words(None, self.tr.frame_rate, final=True)[self.emitted:]
        return out + self.dec.flush()


def split_for_speech(text: str, max_words: int = TTS_MAX_WORDS, min_words: int = 3) -> list[str]:
    """``text`` in the pieces :class:`Speaker` speaks one at a time: its sentences (split after
    ``.``, ``!`` or ``?`` and a space), a piece of fewer than ``min_words`` words joined to the one
    before it (or after it, at the start), and a sentence of more than ``max_words`` words cut at
    the comma, semicolon or colon nearest its middle (else at its middle word), again until every
    piece fits. Words are counted as whitespace-separated; a text that fits is returned whole."""
    if max_words < 1:
        raise TokenLMError(f"max_words must be >= 1, got {max_words}")
    pieces: list[list[str]] = []
    for sentence in _SENTENCE_END.split(text.strip()):
        words = sentence.split()
        if not words:
            continue
        if pieces and (len(words) < min_words or len(pieces[-1]) < min_words):
            pieces[-1] += words
        else:
            pieces.append(words)

    def fit(words: list[str]) -> list[list[str]]:
        n = len(words)
        if n <= max_words:
            return [words]
        cuts = [i for i in range(min_words, n - min_words + 1) if words[i - 1][-1] in ",;:"]
        cut = min(cuts, key=lambda i: abs(i - n / 2)) if cuts else n // 2
        return fit(words[:cut]) + fit(words[cut:])

    out = [" ".join(w) for p in pieces for w in fit(p)]
    return out or [text]


class Speaker:
    def __init__(self, lm: LoadedLM | str = "tts", codec=None, device: str | torch.device = "cpu",
                 quantize: str | None = None, judge: Transcriber | LoadedLM | str = "asr",
                 tail_seconds: float = TTS_TAIL_SECONDS):
        """``quantize="int8"``: weight-only int8 LM (see :mod:`tokenlm.lm.quantize`).
        ``judge``: the ASR that picks the best of several takes (``speak(..., candidates=N)``),
        loaded on first use; a Transcriber, a checkpoint or a bundled name.
        ``tail_seconds``: how long the speech goes on after the end-of-speech mark (the model
        generates it: the last sound's release and the silence after it, as in its training
        utterances); 0 cuts at the mark."""
        if not tail_seconds >= 0:
            raise TokenLMError(f"tail_seconds must be >= 0, got {tail_seconds}")
        self.tail_seconds = float(tail_seconds)
        self.max_words = TTS_MAX_WORDS  # longer texts are spoken in pieces: split_for_speech
        self.lm = load_lm(lm, device, quantize) if not isinstance(lm, LoadedLM) else lm
        self._judge = judge
        if self.lm.task != "tts":
            raise TokenLMError(f"this LM was trained for '{self.lm.task}', not for speech synthesis (tts)")
        self.model, self.tokenizer, self.device = self.lm.model, self.lm.tokenizer, torch.device(device)
        self.codec = load_codec_for(self.lm, codec, device)
        self.streams = self.model.streams
        self.q = self.lm.codec_info.get("num_codebooks", self.codec.num_codebooks)
        self.frame_rate = self.codec.frame_rate

    @property
    def voices(self) -> str:
        return self.lm.header.get("voices") or "the training corpus's voices"

    @torch.no_grad()
    def speak(self, text: str, *, temperature: float = TTS_TEMPERATURE, top_k: int = TTS_TOP_K,
              timing_temperature: float = TTS_TIMING_TEMPERATURE, seed: int | None = 0,
              max_seconds: float | None = None, candidates: int = 1) -> torch.Tensor:
        """Speech for ``text`` as ``[C, T]`` at the codec's sample rate: the codes sampled at
        ``temperature`` among each codebook's ``top_k`` likeliest, where each word starts at
        ``timing_temperature`` (0: greedy; see :func:`tts_sampling`). ``candidates`` > 1
        samples that many takes in one batch and keeps the one the judge ASR hears closest to
        ``text`` (fewest word errors; the first on a tie): :meth:`takes`.

        A text of more than :attr:`max_words` words is spoken in pieces, sentence by sentence
        (:func:`split_for_speech`; ``max_seconds`` then bounds each piece), and their speech
        joined; piece i of a best-of-N text is sampled from ``seed + i``."""
        if candidates == 1:
            return self.speak_batch([text], temperature=temperature, top_k=top_k,
                                    timing_temperature=timing_temperature, seed=seed, max_seconds=max_seconds)[0]
        parts = []
        for i, piece in enumerate(self._pieces(text)):
            best = min(self.takes(piece, candidates, temperature=temperature, top_k=top_k,
                                  timing_temperature=timing_temperature, seed=None if seed is None else seed + i,
                                  max_seconds=max_seconds),
                       key=lambda t: t.errors)
            parts.append(self._decode(best.codes))
        return torch.cat(parts, dim=-1)

    def _pieces(self, text: str) -> list[str]:
        return [text] if len(text.split()) <= self.max_words else split_for_speech(text, self.max_words)

    @torch.no_grad()
    def takes(self, text: str, n: int, *, temperature: float = TTS_TEMPERATURE, top_k: int = TTS_TOP_K,
              timing_temperature: float = TTS_TIMING_TEMPERATURE, seed: int | None = 0,
              max_seconds: float | None = None) -> list[Take]:
        """``n`` sampled takes of ``text`` (one batch), each with what the judge ASR heard and its
        word error rate against ``text``, in sampling order."""
        if n < 1:
            raise TokenLMError(f"candidates must be >= 1, got {n}")
        codes = self._sample([text] * n, tts_sampling(self.streams, temperature, top_k, timing_temperature),
                             seed, max_seconds)
        judge = self.judge
        same_codes = (judge.lm.codec_info.get("fingerprint") == self.lm.codec_info.get("fingerprint")
                      and judge.q <= self.q)
        if same_codes:  # the judge reads the sampled codes themselves: no decode and re-encode
            heard = judge.transcribe_codes([c[: judge.q] for c in codes])
        else:
            heard = [judge.transcribe(self._decode(c), self.codec.sample_rate) for c in codes]
        from .evaluation import wer

        out = []
        for c, words in zip(codes, heard):
            said = " ".join(w.word for w in words)
            out.append(Take(codes=c, heard=said, errors=wer([text], [said])))
        return out

    @property
    def judge(self) -> Transcriber:
        """The ASR that picks among takes (loaded on first use)."""
        if isinstance(self._judge, (str, LoadedLM)):
            self._judge = Transcriber(self._judge, device=self.device)
        return self._judge

    def _decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.codec.decode(codes[None].to(self.device))[0].cpu()

    @torch.no_grad()
    def speak_batch(self, texts: list[str], *, temperature: float = TTS_TEMPERATURE, top_k: int = TTS_TOP_K,
                    timing_temperature: float = TTS_TIMING_TEMPERATURE, seed: int | None = 0,
                    max_seconds: float | None = None) -> list[torch.Tensor]:
        """Speech for each of ``texts`` (one batch; one take each; a long text's pieces, as
        :meth:`speak` splits it, are rows of the same batch)."""
        codes = self.sample_batch(texts, temperature=temperature, top_k=top_k, timing_temperature=timing_temperature,
                                  seed=seed, max_seconds=max_seconds)
        return [self.decode_pieces(c) for c in codes]

    @torch.no_grad()
    def sample_batch(self, texts: list[str], *, temperature: float = TTS_TEMPERATURE, top_k: int = TTS_TOP_K,
                     timing_temperature: float = TTS_TIMING_TEMPERATURE, seed: int | None = 0,
                     max_seconds: float | None = None) -> list[list[torch.Tensor]]:
        """What :meth:`speak_batch` samples, before decoding: for each text, the codes ``[Q, F]`` of
        each of its pieces (one piece unless the text is long)."""
        sampling = tts_sampling(self.streams, temperature, top_k, timing_temperature)
        pieces = [self._pieces(t) for t in texts]
        codes = self._sample([p for ps in pieces for p in ps], sampling, seed, max_seconds)
        out, i = [], 0
        for ps in pieces:
            out.append(codes[i: i + len(ps)])
            i += len(ps)
        return out

    @torch.no_grad()
    def decode_pieces(self, pieces: list[torch.Tensor], codec=None) -> torch.Tensor:
        """Speech ``[C, T]`` for one text's sampled pieces (:meth:`sample_batch`), joined; ``codec``: another
        decoder of the same codes (checked by token fingerprint) instead of the Speaker's own."""
        if codec is None:
            return torch.cat([self._decode(c) for c in pieces], dim=-1)
        if codec.token_fingerprint != self.codec.token_fingerprint:
            raise CodecError(f"codec {codec.token_fingerprint} does not decode this TTS's tokens "
                             f"({self.codec.token_fingerprint})")
        return torch.cat([codec.decode(c[None].to(self.device))[0].cpu() for c in pieces], dim=-1)

    def _sample(self, texts: list[str], sampling: list[Sampling], seed: int | None,
                max_seconds: float | None) -> list[torch.Tensor]:
        """Sampled codes ``[Q, F]`` for each text."""
        words = [self.tokenizer.words(t) for t in texts]
        for t, w in zip(texts, words):
            if not w:
                raise TokenLMError(f"nothing to say in {t!r}: no words after normalisation")
        pieces = [[self.tokenizer.encode_word(x) for x in w] for w in words]
        b, k = len(texts), len(self.streams)
        text_spec = self.streams[0]
        pad, epad = text_spec.pad_id, text_spec.epad_id
        gen = torch.Generator(device=self.device)
        if seed is not None:
            gen.manual_seed(seed)
        st = LMStreamer(self.model, b, sampling=sampling, generator=gen)
        st.start()
        audio_delays = [s.delay for s in self.streams if s.kind == "audio"]
        max_d = max(audio_delays)
        tail = int(round(self.tail_seconds * self.frame_rate))
        limit = [int(self.frame_rate * (max_seconds or 2.0 + 0.6 * len(w))) + max_d + tail for w in words]
        ended = [False] * b
        pending: list[list[int]] = [[] for _ in range(b)]
        next_word = [0] * b
        end_frame: list[int | None] = [None] * b
        done = [False] * b
        frames: list[torch.Tensor] = []
        only_pad = torch.zeros(text_spec.output_vocab, dtype=torch.bool)
        only_pad[pad] = True
        pad_or_epad = only_pad.clone()
        pad_or_epad[epad] = True
        t = 0
        while not all(done):
            provided = torch.full((b, k), UNGENERATED, dtype=torch.long)
            allow = torch.zeros(b, text_spec.output_vocab, dtype=torch.bool)
            for j in range(b):
                if pending[j]:
                    provided[j, 0] = pending[j].pop(0)
                elif end_frame[j] is not None or done[j]:
                    provided[j, 0] = pad
                else:
                    allow[j] = pad_or_epad
            for i, s in enumerate(self.streams):
                if s.kind == "audio" and t < s.delay:
                    provided[:, i] = ZERO
            tokens = st.step(provided, allowed={0: allow}).cpu()
            frames.append(tokens)
            for j in range(b):
                if done[j]:
                    continue
                if provided[j, 0] == UNGENERATED and tokens[j, 0] == epad:
                    if next_word[j] < len(pieces[j]):
                        pending[j] = list(pieces[j][next_word[j]])
                        next_word[j] += 1
                    else:
                        end_frame[j] = t
                if end_frame[j] is not None and t >= end_frame[j] + max_d + tail:
                    done[j] = ended[j] = True  # every (delayed) codebook has reached the mark + the tail
                elif t + 1 >= limit[j]:
                    done[j] = True  # cut at the last frame every (delayed) codebook has reached
                    end_frame[j] = min(t if end_frame[j] is None else end_frame[j], t - max_d)
            t += 1
        seq = torch.stack(frames, dim=2)  # [B, K, T]
        out = []
        for j in range(b):
            n = max(1, end_frame[j] + 1 + (tail if ended[j] else 0))
            codes = torch.stack([seq[j, 1 + q, self.streams[1 + q].delay: self.streams[1 + q].delay + n]
                                 for q in range(self.q)])
            out.append(codes.clamp(0, self.codec.codebook_size - 1))  # ZERO/START never reach here; be safe
        return out
