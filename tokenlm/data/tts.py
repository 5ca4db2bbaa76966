"""Text to speech with word timings from Debian's espeak-ng and flite (in process) and festival.

Both engines are driven through their C libraries with :mod:`ctypes` (no extra Python
package, no process per sentence), and both report where each word is in the audio:

- **espeak-ng** (``libespeak-ng1``): synchronous mode with a synth callback that collects the
  samples and the engine's events. A word event gives the word's first sample and its text
  position; phoneme events give the pauses that end a word. Output 22.05 kHz, resampled to 16 kHz.
  Voices are an accent (``en-us``, ``en``, ``en-gb-scotland`` ...) plus an optional variant
  (``en-us+m3``, ``en+f2``, ``en-029+klatt``, ``en-us-nyc+Alex``); ``en-gb+VARIANT`` would
  silently drop the variant, so British English is ``en`` here.
- **flite** (``libflite1``): ``flite_synth_text`` returns an utterance; its wave is read directly
  and its Token relation (one item per space-separated token of the text) leads to the Word items
  and their first and last segments, whose end times bound the word. Voices ``kal16``, ``awb``,
  ``rms``, ``slt`` (16 kHz; the 8 kHz ``kal`` is left out).

- **festival** (``festival`` and a voice package: ``festvox-kdlpc16k`` for ``ked``, a US male,
  ``festvox-kallpc16k`` for ``kal``): one long-lived ``festival --pipe`` process per engine, fed
  Scheme; each utterance's wave goes through a temporary file and its Token relation gives the
  word times (the first and last word of each token). More speakers for training: its voices are
  not among the corpus's test voices.

Every engine's :meth:`synthesize` returns ``(wav, words)``: ``wav`` a float32 ``[1, T]`` tensor
at 16 kHz, ``words`` one ``{"word", "start", "end"}`` dict (seconds) per space-separated token
of the text, in order, with punctuation stripped from the word. A token that the engine does not
speak raises :class:`~tokenlm.errors.TokenLMError`, as does a library that cannot be loaded
(the message names the Debian package to install).

``rate`` and ``pitch`` are factors around the voice's own (1.0 = as the voice is): espeak-ng
speaks at ``175 * rate`` words per minute with pitch parameter ``50 + 100 * (pitch - 1)``;
flite stretches durations by ``1 / rate`` and shifts F0 by ``pitch`` (``rms`` ignores the shift);
festival stretches durations by ``1 / rate`` and scales the target F0 mean and range by ``pitch``.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import tempfile
import threading
from bisect import bisect_right
from pathlib import Path

import numpy as np
import torch

from ..audio import resample
from ..errors import TokenLMError

__all__ = [
    "SAMPLE_RATE",
    "ENGINES",
    "ESPEAK_ACCENTS",
    "FLITE_VOICES",
    "EspeakEngine",
    "FliteEngine",
    "FESTIVAL_VOICES",
    "FestivalEngine",
    "get_engine",
    "engine_available",
    "synthesize",
    "pad_silence",
    "trim_silence",
    "seed_noise",
]

SAMPLE_RATE = 16000
ENGINES = ("espeak-ng", "flite", "festival")
ESPEAK_ACCENTS = (
    "en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
)
FLITE_VOICES = ("kal16", "awb", "rms", "slt")
# festival voice -> (its Scheme function, its Debian package)
FESTIVAL_VOICES = {"ked": ("voice_ked_diphone", "festvox-kdlpc16k"), "kal": ("voice_kal_diphone", "festvox-kallpc16k")}
# espeak-ng variants left out of espeak_voices() by default: a speed test, robots and effects
ESPEAK_NOVELTY_VARIANTS = frozenset(
    {"fast", "Demonic", "UniRobot", "anikaRobot"} | {f"robosoft{i}" for i in ("", 2, 3, 4, 5, 6, 7, 8)}
)

_HAS_WORD = re.compile(r"[A-Za-z0-9]")


def _word(token: str) -> str:
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", token)


def _load(names: list[str], package: str, mode: int = ctypes.DEFAULT_MODE) -> ctypes.CDLL:
    errors = []
    for name in names:
        try:
            return ctypes.CDLL(name, mode=mode)
        except OSError as e:
            errors.append(str(e))
    raise TokenLMError(
        f"cannot load {names[0]} ({errors[0] if errors else 'not found'}); install the Debian package "
        f"{package} (`apt-get install {package}`, or `make speech-deps`)"
    )


# ---- espeak-ng --------------------------------------------------------------------------------------

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_AUTO = 0
_ENDPAUSE = 0x1000
_EV_LIST_TERMINATED, _EV_WORD, _EV_SENTENCE, _EV_MARK, _EV_PLAY, _EV_END, _EV_MSG_TERMINATED, _EV_PHONEME = range(8)
_P_RATE, _P_VOLUME, _P_PITCH, _P_RANGE = 1, 2, 3, 4


class _EspeakEvent(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),  # union {int number; const char *name; char string[8]}
    ]


_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_EspeakEvent))


class EspeakEngine:
    """espeak-ng through libespeak-ng. One per process (the library keeps global state): use
    :func:`get_engine`."""

    name = "espeak-ng"
    package = "libespeak-ng1 espeak-ng-data"

    def __init__(self) -> None:
        lib = _load(["libespeak-ng.so.1", "libespeak-ng.so"], self.package)
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
            ctypes.c_void_p, ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Info.argtypes = [ctypes.POINTER(ctypes.c_char_p)]
        lib.espeak_Info.restype = ctypes.c_char_p
        rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, None, _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_DONT_EXIT
        )
        if rate <= 0:
            raise TokenLMError(f"espeak-ng failed to start (error {rate}); reinstall the Debian package espeak-ng-data")
        self._lib = lib
        self.native_rate = rate
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple] = []
        self._callback = _SYNTH_CALLBACK(self._on_audio)  # keep a reference: the library holds the pointer
        lib.espeak_SetSynthCallback(self._callback)
        data = ctypes.c_char_p()
        self.version = lib.espeak_Info(ctypes.byref(data)).decode()
        self.data_dir = Path(data.value.decode()) if data.value else None
        self._lock = threading.Lock()

    def _on_audio(self, wav, num_samples, events) -> int:
        if num_samples > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, (num_samples,)).copy())
        i = 0
        while events[i].type != _EV_LIST_TERMINATED:
            e = events[i]
            name = e.id.decode("ascii", "replace") if e.type == _EV_PHONEME else ""
            self._events.append((e.type, e.text_position, e.length, e.sample, name))
            i += 1
        return 0

    def voices(self, include_novelty: bool = False) -> list[str]:
        """Every English voice: each accent alone and with each variant found in ``voices/!v``."""
        variants = []
        vdir = self.data_dir / "voices" / "!v" if self.data_dir else None
        if vdir is not None and vdir.is_dir():
            variants = sorted(p.name for p in vdir.iterdir() if p.is_file() and " " not in p.name)
        if not include_novelty:
            variants = [v for v in variants if v not in ESPEAK_NOVELTY_VARIANTS]
        return [a + (f"+{v}" if v else "") for a in ESPEAK_ACCENTS for v in ["", *variants]]

    def _synth(self, text: str, voice: str, rate: float, pitch: float) -> tuple[np.ndarray, list[tuple]]:
        with self._lock:
            lib = self._lib
            if lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise TokenLMError(f"espeak-ng has no voice {voice!r}")
            lib.espeak_SetParameter(_P_RATE, int(round(min(max(175 * rate, 80), 450))), 0)
            lib.espeak_SetParameter(_P_PITCH, int(round(min(max(50 + 100 * (pitch - 1), 0), 99))), 0)
            self._chunks, self._events = [], []
            data = text.encode("utf-8")
            err = lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_AUTO | _ENDPAUSE, None, None)
            chunks, events = self._chunks, self._events
            self._chunks, self._events = [], []
        if err != 0:
            raise TokenLMError(f"espeak-ng could not synthesize the text (error {err})")
        samples = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
        if samples.size == 0:
            raise TokenLMError("espeak-ng produced no audio")
        return samples, events

    def synthesize(self, text: str, voice: str = "en-us", rate: float = 1.0, pitch: float = 1.0,
                   phones: bool = False):
        """Speak ``text`` with ``voice``; returns ``(wav [1, T] float32 at 16 kHz, words)``, and with
        ``phones`` also the phoneme timings (espeak-ng's own phoneme names; pauses start with "_")."""
        if voice.split("+", 1)[0].lower() == "en-gb" and "+" in voice:
            raise TokenLMError(f"espeak-ng voice {voice!r}: en-gb ignores variants; use 'en+{voice.split('+', 1)[1]}'")
        words_in = text.split()
        if not words_in:
            raise TokenLMError("nothing to say: the text is empty")
        # espeak-ng reads some word pairs as one dictionary phrase ("in the", "out of") and then
        # reports one word event for both; a no-break space between them keeps them apart.
        # Only the pairs that merged get one, so every other sentence is read as written.
        glue: set[int] = set()
        for _attempt in range(3):
            spoken, tokens, pos = [], [], 0
            for k, tok in enumerate(words_in):
                if k:
                    spoken.append("\u00a0" if k in glue else " ")
                    pos += 1
                tokens.append((pos, pos + len(tok), tok))
                spoken.append(tok)
                pos += len(tok)
            samples, events = self._synth("".join(spoken), voice, rate, pitch)
            first = _first_events(tokens, events)
            merged = {k for k, (_, _, tok) in enumerate(tokens) if k not in first and _HAS_WORD.search(tok)}
            if not merged or merged <= glue:
                break
            glue |= merged
        sr = self.native_rate
        words = _espeak_words(text, tokens, first, events, samples.size, sr)
        wav = torch.from_numpy(samples.astype(np.float32) / 32768.0)[None]
        if phones:
            return resample(wav, sr, SAMPLE_RATE), words, _espeak_phones(events, samples.size, sr)
        return resample(wav, sr, SAMPLE_RATE), words


def _first_events(tokens: list[tuple[int, int, str]], events: list[tuple]) -> dict[int, int]:
    """Token index -> sample of its first word event (text_position counts characters from 1)."""
    starts = [s for s, _, _ in tokens]
    first: dict[int, int] = {}
    for etype, pos, _length, sample, _name in events:
        if etype == _EV_WORD and pos > 0:
            k = bisect_right(starts, pos - 1) - 1
            if k >= 0 and pos - 1 < tokens[k][1] and k not in first:
                first[k] = sample
    return first


def _espeak_words(
    text: str, tokens: list[tuple[int, int, str]], first: dict[int, int], events: list[tuple], num_samples: int, sr: int
) -> list[dict]:
    """Token start = its first word event; end = the first pause (or end of speech, or next token)
    after the token's last sounding phoneme."""
    missing = [tok for k, (_, _, tok) in enumerate(tokens) if k not in first and _HAS_WORD.search(tok)]
    if missing:
        raise TokenLMError(f"espeak-ng reported no word event for {missing[:5]} in {text!r}")
    found = sorted(first)
    if [first[k] for k in found] != sorted(first[k] for k in found):
        raise TokenLMError(f"espeak-ng word events out of order in {text!r}")
    phonemes = [(sample, name) for etype, _, _, sample, name in events if etype == _EV_PHONEME]
    boundaries = sorted(
        [sample for sample, name in phonemes if name.startswith("_")]
        + [sample for etype, _, _, sample, _ in events if etype in (_EV_END, _EV_MSG_TERMINATED)]
    )
    sounding = sorted(sample for sample, name in phonemes if not name.startswith("_"))
    words = []
    for i, k in enumerate(found):
        start = first[k]
        nxt = first[found[i + 1]] if i + 1 < len(found) else num_samples
        inside = [s for s in sounding[bisect_right(sounding, start - 1) :] if s < nxt]
        last = inside[-1] if inside else start
        after = [b for b in boundaries[bisect_right(boundaries, last) :] if b <= nxt]
        end = min(after[0] if after else nxt, num_samples)
        if end <= start:
            end = min(nxt, num_samples)
        words.append({"word": _word(tokens[k][2]), "start": start / sr, "end": end / sr})
    return words


def _espeak_phones(events: list[tuple], num_samples: int, sr: int) -> list[dict]:
    """Phoneme events -> ``[{"phone", "start", "end"}]``: each phoneme lasts until the next one
    starts (the last until the end of the audio); zero-length ones are dropped."""
    marks = sorted((sample, name) for etype, _, _, sample, name in events if etype == _EV_PHONEME and name)
    out = []
    for i, (sample, name) in enumerate(marks):
        end = marks[i + 1][0] if i + 1 < len(marks) else num_samples
        end = min(end, num_samples)
        if end > sample:
            out.append({"phone": name, "start": sample / sr, "end": end / sr})
    return out


# ---- flite ------------------------------------------------------------------------------------------------


class _FliteWave(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_char_p),
        ("sample_rate", ctypes.c_int),
        ("num_samples", ctypes.c_int),
        ("num_channels", ctypes.c_int),
        ("samples", ctypes.POINTER(ctypes.c_short)),
    ]


class _FliteVoice(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("features", ctypes.c_void_p), ("ffunctions", ctypes.c_void_p)]


class FliteEngine:
    """flite through libflite; voices are registered on first use. Use :func:`get_engine`."""

    name = "flite"
    package = "libflite1"

    def __init__(self) -> None:
        lib = _load(["libflite.so.1", "libflite.so"], self.package, mode=ctypes.RTLD_GLOBAL)
        for dep in ("libflite_usenglish", "libflite_cmulex"):
            _load([f"{dep}.so.1", f"{dep}.so"], self.package, mode=ctypes.RTLD_GLOBAL)
        P, S = ctypes.c_void_p, ctypes.c_char_p
        for fn, args, res in [
            ("flite_init", [], ctypes.c_int),
            ("flite_synth_text", [S, P], P),
            ("utt_wave", [P], ctypes.POINTER(_FliteWave)),
            ("utt_relation", [P, S], P),
            ("relation_head", [P], P),
            ("item_next", [P], P),
            ("item_daughter", [P], P),
            ("item_last_daughter", [P], P),
            ("item_as", [P, S], P),
            ("item_feat_string", [P, S], S),
            ("ffeature_float", [P, S], ctypes.c_float),
            ("delete_utterance", [P], None),
            ("feat_set_float", [P, S, ctypes.c_float], None),
            ("flite_get_param_float", [P, S, ctypes.c_float], ctypes.c_float),
        ]:
            f = getattr(lib, fn)
            f.argtypes, f.restype = args, res
        lib.flite_init()
        self._lib = lib
        self._voices: dict[str, tuple[ctypes.POINTER, float]] = {}
        self._lock = threading.Lock()
        self.version = _debian_version("libflite1") or "2.x"

    def voices(self) -> list[str]:
        return list(FLITE_VOICES)

    def _voice(self, name: str):
        if name not in self._voices:
            if name not in FLITE_VOICES:
                raise TokenLMError(f"flite has no voice {name!r}; choose from {', '.join(FLITE_VOICES)}")
            vlib = _load([f"libflite_cmu_us_{name}.so.1", f"libflite_cmu_us_{name}.so"], self.package)
            register = getattr(vlib, f"register_cmu_us_{name}")
            register.argtypes, register.restype = [ctypes.c_char_p], ctypes.POINTER(_FliteVoice)
            voice = register(None)
            if not voice:
                raise TokenLMError(f"flite could not load voice {name!r}; reinstall the Debian package libflite1")
            stretch = self._lib.flite_get_param_float(voice.contents.features, b"duration_stretch", 1.0)
            self._voices[name] = (voice, stretch, vlib)
        return self._voices[name]

    def synthesize(self, text: str, voice: str = "slt", rate: float = 1.0, pitch: float = 1.0,
                   phones: bool = False):
        """Speak ``text`` with ``voice``; returns ``(wav [1, T] float32 at 16 kHz, words)``, and with
        ``phones`` also the phone timings (flite's Segment relation: CMU phone names, "pau" pauses)."""
        tokens = text.split()
        if not tokens:
            raise TokenLMError("nothing to say: the text is empty")
        lib = self._lib
        with self._lock:
            v, stretch, _ = self._voice(voice)
            feats = v.contents.features
            lib.feat_set_float(feats, b"duration_stretch", float(stretch / rate))
            lib.feat_set_float(feats, b"f0_shift", float(pitch))
            utt = lib.flite_synth_text(text.encode("utf-8"), v)
            if not utt:
                raise TokenLMError(f"flite could not synthesize {text!r}")
            try:
                w = lib.utt_wave(utt)
                if not w or w.contents.num_samples <= 0:
                    raise TokenLMError("flite produced no audio")
                w = w.contents
                sr = w.sample_rate
                samples = np.ctypeslib.as_array(w.samples, (w.num_samples * max(w.num_channels, 1),)).copy()
                spans = self._token_spans(utt)
                segments = self._segments(utt) if phones else None
            finally:
                lib.delete_utterance(utt)
        if len(spans) != len(tokens):
            raise TokenLMError(f"flite read {len(spans)} tokens where the text has {len(tokens)}: {text!r}")
        words = []
        for tok, (_name, start, end) in zip(tokens, spans):
            if start is None:
                if _HAS_WORD.search(tok):
                    raise TokenLMError(f"flite spoke no word for {tok!r} in {text!r}")
                continue
            words.append({"word": _word(tok), "start": start, "end": end})
        dur = samples.size / sr
        for wd in words:
            wd["start"], wd["end"] = min(wd["start"], dur), min(wd["end"], dur)
        wav = torch.from_numpy(samples.astype(np.float32) / 32768.0)[None]
        if phones:
            segs = [{**g, "end": min(g["end"], dur)} for g in segments if min(g["end"], dur) > g["start"]]
            return resample(wav, sr, SAMPLE_RATE), words, segs
        return resample(wav, sr, SAMPLE_RATE), words

    def _segments(self, utt) -> list[dict]:
        lib = self._lib
        out, start = [], 0.0
        seg = lib.relation_head(lib.utt_relation(utt, b"Segment"))
        while seg:
            name = (lib.item_feat_string(seg, b"name") or b"").decode("utf-8", "replace")
            end = float(lib.ffeature_float(seg, b"end"))
            if end > start and name:
                out.append({"phone": name, "start": start, "end": end})
            start = max(start, end)
            seg = lib.item_next(seg)
        return out

    def _token_spans(self, utt) -> list[tuple[str, float | None, float | None]]:
        lib = self._lib
        spans = []
        tok = lib.relation_head(lib.utt_relation(utt, b"Token"))
        while tok:
            name = (lib.item_feat_string(tok, b"name") or b"").decode("utf-8", "replace")
            start = end = None
            word = lib.item_daughter(lib.item_as(tok, b"Token"))
            while word:
                syl = lib.item_as(word, b"SylStructure")
                if syl and lib.item_daughter(syl):
                    s = lib.ffeature_float(word, b"R:SylStructure.daughter1.daughter1.R:Segment.p.end")
                    e = lib.ffeature_float(word, b"R:SylStructure.daughtern.daughtern.R:Segment.end")
                    start = s if start is None else start
                    end = e
                word = lib.item_next(word)
            if start is not None and not end > start:
                start = end = None
            spans.append((name, start, end))
            tok = lib.item_next(tok)
        return spans


_FESTIVAL_INIT = r"""
(define (tokenlm_voice fn)
  (eval (list fn))
  (set! tokenlm_stretch (Parameter.get 'Duration_Stretch))
  (if (not tokenlm_stretch) (set! tokenlm_stretch 1.0))
  (set! tokenlm_int (if (boundp 'int_lr_params) int_lr_params nil))
  (format t "@@VOICE@@ %s\n" current-voice))
(define (tokenlm_scaled pitch)
  (mapcar (lambda (x) (if (member (car x) '(target_f0_mean target_f0_std)) (list (car x) (* pitch (car (cdr x)))) x))
          tokenlm_int))
(define (tokenlm_words utt)
  (let ((tok (utt.relation.first utt 'Token)))
    (while tok
      (format t "T")
      (mapcar (lambda (w) (format t "\t%f\t%f" (item.feat w "word_start") (item.feat w "word_end")))
              (item.daughters tok))
      (format t "\n")
      (set! tok (item.next tok)))))
(define (tokenlm_say text rate pitch path)
  (set! tokenlm_ok nil)
  (unwind-protect
    (begin
      (Parameter.set 'Duration_Stretch (/ tokenlm_stretch rate))
      (if tokenlm_int (set! int_lr_params (tokenlm_scaled pitch)))
      (set! utt (SynthText text))
      (utt.save.wave utt path 'riff)
      (tokenlm_words utt)
      (set! tokenlm_ok t))
    nil)
  (format t "@@END@@ %s\n" (if tokenlm_ok "ok" "error")))
"""


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class FestivalEngine:
    """festival through one ``festival --pipe`` process (started on first use; Scheme in, word
    times out). Use :func:`get_engine`."""

    name = "festival"
    package = "festival"

    def __init__(self) -> None:
        self._exe = shutil.which("festival")
        if self._exe is None:
            raise TokenLMError("festival is not installed: sudo apt-get install festival festvox-kdlpc16k")
        self.version = _debian_version("festival") or "2.x"
        self._proc = None
        self._voice_now = None
        self._tmp = None
        self._lock = threading.Lock()

    def voices(self) -> list[str]:
        """The festival voices whose Debian package is installed."""
        return [v for v, (_fn, pkg) in FESTIVAL_VOICES.items() if _debian_version(pkg)]

    def _start(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="tokenlm-festival-")
        self._err = open(Path(self._tmp.name) / "stderr.txt", "w+")
        # festival buffers a pipe's output; stdbuf makes each line arrive as it is written
        cmd = ([shutil.which("stdbuf"), "-o0"] if shutil.which("stdbuf") else []) + [self._exe, "--pipe"]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err,
                                      text=True, bufsize=1)
        self._send(_FESTIVAL_INIT)
        self._voice_now = None

    def _send(self, scheme: str) -> None:
        try:
            self._proc.stdin.write(scheme + "\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self._died()

    def _died(self):
        self._err.seek(0)
        tail = " ".join(self._err.read().split())[-300:]
        self._proc = None
        raise TokenLMError(f"festival stopped unexpectedly{': ' + tail if tail else ''}")

    def _read_until(self, marker: str) -> tuple[list[str], str]:
        lines = []
        while True:
            line = self._proc.stdout.readline()
            if not line:
                self._died()
            line = line.rstrip("\n")
            if line.startswith(marker):
                return lines, line[len(marker):].strip()
            lines.append(line)

    def _select(self, voice: str) -> None:
        if voice not in FESTIVAL_VOICES:
            raise TokenLMError(f"festival has no voice {voice!r}; choose from {', '.join(FESTIVAL_VOICES)}")
        if self._proc is None or self._proc.poll() is not None:
            self._start()
        if self._voice_now != voice:
            fn, pkg = FESTIVAL_VOICES[voice]
            if not _debian_version(pkg):
                raise TokenLMError(f"festival voice {voice!r} is not installed: sudo apt-get install {pkg}")
            self._send(f"(tokenlm_voice '{fn})")
            self._read_until("@@VOICE@@")
            self._voice_now = voice

    def synthesize(self, text: str, voice: str = "ked", rate: float = 1.0, pitch: float = 1.0):
        """Speak ``text`` with ``voice``; returns ``(wav [1, T] float32 at 16 kHz, words)``."""
        import soundfile as sf

        tokens = text.split()
        if not tokens:
            raise TokenLMError("nothing to say: the text is empty")
        if not (rate > 0 and pitch > 0):
            raise TokenLMError(f"rate and pitch must be > 0, got {rate} and {pitch}")
        flat = " ".join(tokens)
        with self._lock:
            self._select(voice)
            path = Path(self._tmp.name) / "utt.wav"
            path.unlink(missing_ok=True)
            try:
                self._send(f"(tokenlm_say {_scheme_string(flat)} {float(rate)!r} {float(pitch)!r} "
                           f"{_scheme_string(str(path))})")
                lines, status = self._read_until("@@END@@")
            except TokenLMError as e:  # the next call starts a new process
                raise TokenLMError(f"festival could not synthesize {text!r} ({e})") from None
            if status != "ok" or not path.is_file():
                raise TokenLMError(f"festival could not synthesize {text!r}")
            samples, sr = sf.read(str(path), dtype="float32", always_2d=True)
        spans = []
        for line in lines:
            if not line.startswith("T"):
                continue
            times = [float(x) for x in line.split("\t")[1:]]
            pairs = [(a, b) for a, b in zip(times[0::2], times[1::2]) if b > a]
            spans.append((pairs[0][0], pairs[-1][1]) if pairs else (None, None))
        if len(spans) != len(tokens):
            raise TokenLMError(f"festival read {len(spans)} tokens where the text has {len(tokens)}: {text!r}")
        if samples.size == 0:
            raise TokenLMError("festival produced no audio")
        dur = samples.shape[0] / sr
        words = []
        for tok, (start, end) in zip(tokens, spans):
            if start is None:
                if _HAS_WORD.search(tok):
                    raise TokenLMError(f"festival spoke no word for {tok!r} in {text!r}")
                continue
            words.append({"word": _word(tok), "start": min(start, dur), "end": min(end, dur)})
        wav = torch.from_numpy(np.ascontiguousarray(samples.mean(axis=1)))[None]
        return resample(wav, sr, SAMPLE_RATE), words

    def close(self) -> None:
        if self._proc is not None:
            try:
                self._proc.stdin.close()
                self._proc.wait(timeout=5)
            except (OSError, subprocess.SubprocessError):
                self._proc.kill()
            self._proc = None
        if self._tmp is not None:
            self._err.close()
            self._tmp.cleanup()
            self._tmp = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def _debian_version(package: str) -> str | None:
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


# ---- engines, cached per process ------------------------------------------------------------------------

_ENGINES: dict[str, object] = {}
_ENGINES_LOCK = threading.Lock()
_ENGINE_CLASSES = {"espeak-ng": EspeakEngine, "flite": FliteEngine, "festival": FestivalEngine}


def get_engine(name: str):
    """The process's engine ``name`` ("espeak-ng", "flite" or "festival"), started on first use."""
    if name not in _ENGINE_CLASSES:
        raise TokenLMError(f"unknown TTS engine {name!r}; choose from {', '.join(ENGINES)}")
    with _ENGINES_LOCK:
        key = (name, os.getpid())  # a forked child starts its own
        if key not in _ENGINES:
            _ENGINES[key] = _ENGINE_CLASSES[name]()
        return _ENGINES[key]


def engine_available(name: str) -> bool:
    """Whether ``name``'s library loads (False instead of an error)."""
    try:
        get_engine(name)
    except TokenLMError:
        return False
    return True


def synthesize(text: str, engine: str = "espeak-ng", voice: str | None = None, rate: float = 1.0, pitch: float = 1.0):
    """Speak ``text``: ``(wav [1, T] float32 at 16 kHz, words)``. ``voice`` defaults to the engine's
    first (``en-us`` / ``kal16`` / ``ked``)."""
    eng = get_engine(engine)
    if voice is None:
        voice = {"espeak-ng": "en-us", "flite": "kal16", "festival": "ked"}[engine]
    return eng.synthesize(text, voice, rate=rate, pitch=pitch)


_LIBC = None


def seed_noise(seed: int) -> None:
    """Seed the C library's ``rand()``, the noise source of both engines (breath, klatt noise,
    flite's excitation). With it, flite's audio depends only on the text, voice and settings;
    espeak-ng also keeps a little state between sentences (its pitch flutter), so its audio can
    still differ by a few samples with what the process spoke before."""
    global _LIBC
    if _LIBC is None:
        _LIBC = ctypes.CDLL(None)
        _LIBC.srand.argtypes = [ctypes.c_uint]
    _LIBC.srand(seed & 0xFFFFFFFF)


# ---- silence ----------------------------------------------------------------------------------------------


def _shift(words: list[dict], seconds: float, limit: float) -> list[dict]:
    return [
        {**w, "start": min(max(w["start"] + seconds, 0.0), limit), "end": min(max(w["end"] + seconds, 0.0), limit)}
        for w in words
    ]


def pad_silence(
    wav: torch.Tensor, words: list[dict], lead: float, trail: float, sample_rate: int = SAMPLE_RATE
) -> tuple[torch.Tensor, list[dict]]:
    """Add ``lead`` and ``trail`` seconds of silence around ``wav [C, T]``; word times move by the
    lead (rounded to whole samples)."""
    if lead < 0 or trail < 0:
        raise ValueError("silence must be >= 0 seconds")
    a, b = int(round(lead * sample_rate)), int(round(trail * sample_rate))
    out = torch.nn.functional.pad(wav, (a, b))
    return out, _shift(words, a / sample_rate, out.shape[-1] / sample_rate)


def trim_silence(
    wav: torch.Tensor,
    words: list[dict],
    sample_rate: int = SAMPLE_RATE,
    margin: float = 0.02,
    threshold_db: float = -45.0,
) -> tuple[torch.Tensor, list[dict]]:
    """Cut the engine's own leading and trailing silence, keeping ``margin`` seconds around both
    the sound (10 ms frames within ``threshold_db`` of the loudest) and every word."""
    x = wav.abs().amax(dim=0) if wav.dim() == 2 else wav.abs()
    n = x.shape[-1]
    hop = max(1, sample_rate // 100)
    frames = torch.nn.functional.pad(x, (0, (-n) % hop)).view(-1, hop)
    level = frames.square().mean(dim=1).sqrt()
    active = torch.nonzero(level > level.max() * 10 ** (threshold_db / 20)).flatten()
    if active.numel() == 0:
        return wav, words
    begin = active[0].item() * hop / sample_rate
    finish = min((active[-1].item() + 1) * hop, n) / sample_rate
    if words:
        begin = min(begin, min(w["start"] for w in words))
        finish = max(finish, max(w["end"] for w in words))
    a = max(0, int((begin - margin) * sample_rate))
    b = min(n, int(np.ceil((finish + margin) * sample_rate)))
    out = wav[..., a:b]
    return out, _shift(words, -a / sample_rate, out.shape[-1] / sample_rate)
