"""The text tokenizer: a sentencepiece model over lower-case words.

Text enters the LM word by word (each word's pieces start at the frame where the word starts), so
the tokenizer works on words: :meth:`TextTokenizer.words` normalises a string into lower-case words
(numbers spelled out, punctuation dropped), :meth:`encode_word` gives one word's piece ids and
:meth:`decode` turns ids back into text. Trained by ``recipes/train_tokenizer.py`` on the corpus
text and shipped inside each LM checkpoint.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..errors import CheckpointError

__all__ = ["TextTokenizer", "PhoneTokenizer", "load_tokenizer", "tokenizer_from_bytes", "words_of"]

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")


def words_of(text: str) -> list[str]:
    """Lower-case words of ``text`` after the corpus's speech normalisation (numbers -> words)."""
    from ..data.text import normalize_text

    norm = normalize_text(text)
    if norm is None:  # something normalize_text refuses (e.g. unspeakable digits): keep the letters
        norm = text
    return _WORD.findall(norm.lower())


class TextTokenizer:
    def __init__(self, model_proto: bytes):
        import sentencepiece as spm

        self.proto = bytes(model_proto)
        self.sp = spm.SentencePieceProcessor()
        try:
            self.sp.LoadFromSerializedProto(self.proto)
        except Exception as e:  # sentencepiece raises RuntimeError/OSError with C++ messages
            raise CheckpointError(f"not a sentencepiece model ({e})") from None
        self.digest = hashlib.sha256(self.proto).hexdigest()[:16]

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    @classmethod
    def load(cls, path: str | os.PathLike) -> TextTokenizer:
        p = Path(path)
        try:
            return cls(p.read_bytes())
        except OSError as e:
            raise CheckpointError(f"{p}: cannot read tokenizer ({e.strerror or e})") from None
        except CheckpointError as e:
            raise CheckpointError(f"{p}: {e}") from None

    def save(self, path: str | os.PathLike) -> Path:
        from ..fileio import atomic_write

        p = Path(path)
        atomic_write(p, lambda tmp: Path(tmp).write_bytes(self.proto))
        return p

    @classmethod
    def train(cls, sentences: Iterable[str], vocab_size: int = 1000, model_type: str = "unigram") -> TextTokenizer:
        import sentencepiece as spm

        lines = [" ".join(w) for w in (words_of(s) for s in sentences) if w]
        if not lines:
            raise ValueError("no words to train a tokenizer on")
        buf = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines), model_writer=buf, vocab_size=vocab_size, model_type=model_type,
            character_coverage=1.0, bos_id=-1, eos_id=-1, pad_id=-1, unk_id=0, hard_vocab_limit=False,
            input_sentence_size=2_000_000, shuffle_input_sentence=True, num_threads=1, minloglevel=2,
        )
        return cls(buf.getvalue())

    @staticmethod
    def words(text: str) -> list[str]:
        return words_of(text)

    def encode_word(self, word: str) -> list[int]:
        return self.sp.encode(word.lower())

    def encode_words(self, words: Iterable[str]) -> list[list[int]]:
        return [self.encode_word(w) for w in words]

    def decode(self, ids: Iterable[int]) -> str:
        return self.sp.decode([int(i) for i in ids if 0 <= int(i) < self.vocab_size])

    def piece(self, i: int) -> str:
        return self.sp.id_to_piece(int(i))

    def starts_word(self, i: int) -> bool:
        """Whether piece ``i`` begins a new word (sentencepiece marks it with U+2581)."""
        return self.sp.id_to_piece(int(i)).startswith("\u2581")

    def spell(self, ids: Iterable[int]) -> str:
        """The text of one word's tokens (an ASR's output)."""
        return self.decode(ids)


PHONES_FORMAT = "tokenlm-phones"
# flite's US English phone set (CMU phones without stress), so that any word flite can spell has ids
CMU_PHONES = ("aa", "ae", "ah", "ao", "aw", "ax", "axr", "ay", "b", "ch", "d", "dh", "dx", "eh", "el", "em",
              "en", "er", "ey", "f", "g", "hh", "hv", "ih", "ix", "iy", "jh", "k", "l", "m", "n", "ng", "nx",
              "ow", "oy", "p", "r", "s", "sh", "t", "th", "uh", "uw", "v", "w", "y", "z", "zh")
# a last resort when a word is in neither the lexicon nor flite's reach: one rough phone per letter
_LETTERS = {"a": "ae", "b": "b", "c": "k", "d": "d", "e": "eh", "f": "f", "g": "g", "h": "hh", "i": "ih",
            "j": "jh", "k": "k", "l": "l", "m": "m", "n": "n", "o": "aa", "p": "p", "q": "k", "r": "r", "s": "s",
            "t": "t", "u": "ah", "v": "v", "w": "w", "x": "k s", "y": "y", "z": "z"}


def flite_pronounce(word: str, voice: str = "kal16") -> list[str] | None:
    """flite's phones for one word spoken alone (its lexicon, then its letter-to-sound rules);
    None when flite is not installed."""
    from ..data.tts import engine_available, get_engine

    if not engine_available("flite"):
        return None
    _, _, phones = get_engine("flite").synthesize(word, voice=voice, phones=True)
    return [p["phone"] for p in phones if p["phone"] != "pau"]


class PhoneTokenizer:
    """Words as phones: a pronunciation lexicon (built with flite over a corpus's words and shipped in
    the checkpoint) with one token per phone. For TTS a handful of phones is far easier to learn to
    pronounce than a thousand spelling pieces; for ASR, to recognise. Same interface as
    :class:`TextTokenizer` (``words``, ``encode_word``, ``spell``, ``vocab_size``, ``digest``, ``save``).
    A word outside the lexicon is pronounced by flite when it is installed, else letter by letter
    (rough). :meth:`spell` goes the other way: one word's phones to the lexicon's word that sounds so
    (the most frequent when several do; one phone edit away when none does exactly), which is how an
    ASR with this tokenizer writes words: its vocabulary is the lexicon's."""

    def __init__(self, data: bytes):
        import json

        self.proto = bytes(data)
        try:
            d = json.loads(self.proto.decode("utf-8"))
            if d.get("format") != PHONES_FORMAT:
                raise ValueError(f"format {d.get('format')!r}")
            self.phones: list[str] = list(d["phones"])
            self.lexicon: dict[str, str] = dict(d["lexicon"])
            self.voice: str = d.get("voice", "kal16")
            self.counts: dict[str, int] = {str(w): int(n) for w, n in d.get("counts", {}).items()}
        except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise CheckpointError(f"not a phone lexicon ({e})") from None
        self.ids = {p: i for i, p in enumerate(self.phones)}
        self.digest = hashlib.sha256(self.proto).hexdigest()[:16]
        self._cache: dict[str, list[int]] = {}
        self._spelled: dict[tuple[str, ...], str] = {}
        self._near: dict[tuple[str, ...], list[tuple[str, ...]]] | None = None

    @classmethod
    def build(cls, words: Iterable[str], voice: str = "kal16", progress: bool = False,
              counts: bool = False) -> PhoneTokenizer:
        """The lexicon of ``words`` (normalised like :func:`words_of`) as flite's ``voice`` says them.
        ``counts``: also keep how often each word occurs (what :meth:`spell` prefers among words
        that sound alike; build an ASR's lexicon from its training text only)."""
        import json
        from collections import Counter

        from tqdm import tqdm

        from ..errors import TokenLMError

        freq = Counter(w for x in words for w in words_of(x))
        vocab = sorted(freq)
        if not vocab:
            raise ValueError("no words to build a lexicon from")
        if flite_pronounce("a", voice) is None:
            raise TokenLMError("building a phone lexicon needs flite (make speech-deps)")
        lexicon = {}
        for w in tqdm(vocab, desc="lexicon", unit="word", disable=not progress, dynamic_ncols=True):
            lexicon[w] = " ".join(flite_pronounce(w, voice) or [])
        phones = sorted(set(CMU_PHONES) | {p for v in lexicon.values() for p in v.split()})
        data = {"format": PHONES_FORMAT, "version": 1, "engine": "flite", "voice": voice, "phones": phones,
                "lexicon": lexicon}
        if counts:
            data["counts"] = dict(freq)
        return cls(json.dumps(data, sort_keys=True, separators=(",", ":")).encode("utf-8"))

    @property
    def vocab_size(self) -> int:
        return len(self.phones)

    def save(self, path: str | os.PathLike) -> Path:
        return TextTokenizer.save(self, path)  # type: ignore[arg-type]  # same bytes-to-file job

    @staticmethod
    def words(text: str) -> list[str]:
        return words_of(text)

    def pronounce(self, word: str) -> list[str]:
        """Phones of one lower-case word (several words separated by spaces: concatenated)."""
        out: list[str] = []
        for w in word.lower().split():
            if w in self.lexicon:
                out += self.lexicon[w].split()
                continue
            said = flite_pronounce(w, self.voice)
            if said is None:
                said = " ".join(_LETTERS.get(c, "") for c in w).split()
            out += said
        return out

    def encode_word(self, word: str) -> list[int]:
        if word not in self._cache:
            self._cache[word] = [self.ids[p] for p in self.pronounce(word) if p in self.ids]
        return list(self._cache[word])

    def encode_words(self, words: Iterable[str]) -> list[list[int]]:
        return [self.encode_word(w) for w in words]

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join(self.phones[int(i)] for i in ids if 0 <= int(i) < self.vocab_size)

    def piece(self, i: int) -> str:
        return self.phones[int(i)]

    def starts_word(self, i: int) -> bool:
        """Phones do not mark word starts: the text stream's EPAD before every word does."""
        return False

    def _homophones(self) -> dict[tuple[str, ...], str]:
        """Pronunciation -> its most frequent word (then the shortest, then the first alphabetically)."""
        if not self._spelled and self.lexicon:
            best: dict[tuple[str, ...], tuple[int, int, str]] = {}
            for w, pron in self.lexicon.items():
                key, rank = tuple(pron.split()), (-self.counts.get(w, 0), len(w), w)
                if key and (key not in best or rank < best[key]):
                    best[key] = rank
            self._spelled = {k: r[2] for k, r in best.items()}
        return self._spelled

    def _neighbours(self, phones: tuple[str, ...]) -> list[tuple[str, ...]]:
        """Pronunciations one phone edit (substitution, insertion, deletion) from ``phones``, via an index
        of every pronunciation with each one phone left out."""
        if self._near is None:
            self._near = {}
            for key in self._homophones():
                for v in {key[:i] + key[i + 1:] for i in range(len(key))} | {key}:
                    self._near.setdefault(v, []).append(key)
        out: set[tuple[str, ...]] = set()
        for v in {phones[:i] + phones[i + 1:] for i in range(len(phones))} | {phones}:
            out.update(k for k in self._near.get(v, ()) if _edits(k, phones) <= 1)
        return sorted(out)

    def spell(self, ids: Iterable[int]) -> str:
        """The word one word's phone ids say (see the class notes): the lexicon's word with exactly
        these phones, else the most frequent one a single phone edit away, else "" (nothing: on a phone
        ASR's validation output such words were mostly spurious, and writing the nearest word of any
        distance made the word error rate worse, 0.60 -> 0.63, than leaving them out)."""
        phones = tuple(self.phones[int(i)] for i in ids if 0 <= int(i) < self.vocab_size)
        words = self._homophones()
        if not phones or not words:
            return ""
        if phones in words:
            return words[phones]
        near = self._neighbours(phones)
        return min((words[k] for k in near), key=lambda w: (-self.counts.get(w, 0), len(w), w), default="")


def _edits(a: Sequence[str], b: Sequence[str]) -> int:
    """Levenshtein distance between two phone sequences."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def tokenizer_from_bytes(data: bytes) -> TextTokenizer | PhoneTokenizer:
    """A sentencepiece model or a phone lexicon, told apart by their bytes."""
    return PhoneTokenizer(data) if data.lstrip()[:1] == b"{" else TextTokenizer(data)


def load_tokenizer(path: str | os.PathLike) -> TextTokenizer | PhoneTokenizer:
    """Read a ``tokenizer.model``: a sentencepiece model, or a phone lexicon (:class:`PhoneTokenizer`)."""
    p = Path(path)
    try:
        return tokenizer_from_bytes(p.read_bytes())
    except OSError as e:
        raise CheckpointError(f"{p}: cannot read tokenizer ({e.strerror or e})") from None
    except CheckpointError as e:
        raise CheckpointError(f"{p}: {e}") from None
