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
from collections.abc import Iterable
from pathlib import Path

from ..errors import CheckpointError

__all__ = ["TextTokenizer", "words_of"]

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
