"""Token shards: a speech corpus turned into codec codes and aligned text, ready for LM training.

A shard is one safetensors file holding, for a run of utterances, ``codes`` (int16/int32
``[Q, total_frames]``, utterances back to back), ``text`` (int32 ``[total_frames]``, the text stream
from :func:`tokenlm.lm.streams.place_words`) and ``offsets`` (int64 ``[N + 1]``), with JSON
metadata: the utterance ids and texts, the codec's fingerprint, the tokenizer's digest, the frame
rate. ``index.json`` beside the shards lists them and says how they were made; training checks
that every shard comes from the same codec and tokenizer.

:func:`tokenize_entries` does the work for one shard; ``recipes/pretokenize.py`` runs it over a
manifest in several processes, resumably. :class:`TokenShards` loads a folder of shards and
:func:`collate` makes the task's stream tensors for a batch.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch

from ..errors import TokenLMError
from .streams import Streams, apply_delays, place_words
from .tokenizer import TextTokenizer

__all__ = ["tokenize_entries", "text_stream", "write_shard", "read_shard", "TokenShards", "collate", "word_pieces"]

FORMAT, VERSION = "tokenlm-shard", 1
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")


def word_pieces(tokenizer: TextTokenizer, word: str) -> list[int]:
    """Piece ids of one manifest word (lower-cased, punctuation dropped; may be empty)."""
    parts = _WORD.findall(word.lower())
    return tokenizer.encode_word(" ".join(parts)) if parts else []


def text_stream(entry: dict, tokenizer: TextTokenizer, frame_rate: float, num_frames: int
                ) -> tuple[torch.Tensor, int, str]:
    """The text stream of one manifest entry over ``num_frames`` frames: ``(stream, words placed,
    the placed words as text)``."""
    words = [w for w in entry.get("words", []) if _WORD.search(w["word"].lower())]
    pieces = [word_pieces(tokenizer, w["word"]) for w in words]
    stream, placed = place_words(pieces, [w["start"] for w in words], frame_rate, num_frames,
                                 tokenizer.vocab_size, tokenizer.vocab_size + 1,
                                 end_time=words[-1]["end"] if words else None)
    text = " ".join(" ".join(_WORD.findall(w["word"].lower())) for w in words[:placed])
    return stream, len(words) - placed, text


@torch.no_grad()
def tokenize_entries(entries: list[dict], codec, tokenizer: TextTokenizer, device="cpu",
                     codes_of: dict[str, torch.Tensor] | None = None) -> dict:
    """Codes and text streams for manifest ``entries`` (read, resampled, encoded one by one).

    ``codes_of``: codes already made for these entries (by id, ``[Q, F]``), e.g. from shards of the
    same manifest made with another tokenizer: only the text streams are made again."""
    from ..audio import load_audio

    codes, texts, offsets, ids, words_out, dropped = [], [], [0], [], [], 0
    for e in entries:
        if codes_of is not None:
            if e["id"] not in codes_of:
                raise TokenLMError(f"utterance {e['id']!r} is not in the shards its codes should come from")
            c = codes_of[e["id"]]
        else:
            wav, _ = load_audio(e["audio"], codec.sample_rate, codec.channels)
            c = codec.encode(wav[None].to(device))[0].cpu()  # [Q, F]
        stream, lost, text = text_stream(e, tokenizer, codec.frame_rate, c.shape[1])
        dropped += lost
        codes.append(c)
        texts.append(stream)
        offsets.append(offsets[-1] + c.shape[1])
        ids.append(e["id"])
        words_out.append(text)
    return {
        "codes": torch.cat(codes, dim=1) if codes else torch.zeros(codec.num_codebooks, 0, dtype=torch.long),
        "text": torch.cat(texts) if texts else torch.zeros(0, dtype=torch.long),
        "offsets": torch.tensor(offsets, dtype=torch.long),
        "ids": ids,
        "texts": words_out,
        "dropped_words": dropped,
    }


def write_shard(path: str | os.PathLike, shard: dict, meta: dict) -> Path:
    from safetensors.torch import save_file

    from ..fileio import atomic_write

    card = meta["codebook_size"]
    tensors = {
        "codes": shard["codes"].to(torch.int16 if card <= 32767 else torch.int32).contiguous(),
        "text": shard["text"].to(torch.int32).contiguous(),
        "offsets": shard["offsets"].to(torch.int64).contiguous(),
    }
    header = {"format": FORMAT, "version": VERSION, **meta, "ids": shard["ids"], "texts": shard["texts"]}
    path = Path(path)
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"tokenlm": json.dumps(header)}))
    return path


def read_shard(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            header = json.loads((f.metadata() or {}).get("tokenlm", "{}"))
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for junk and truncation
        raise TokenLMError(f"{path}: not a readable token shard ({e})") from None
    if header.get("format") != FORMAT or set(tensors) != {"codes", "text", "offsets"}:
        raise TokenLMError(f"{path}: not a tokenlm token shard")
    return tensors, header


class TokenShards:
    """Every utterance of a shard folder in memory: ``codes[i] [Q, F_i]``, ``text[i] [F_i]``."""

    CHECKED = ("codec", "tokenizer", "frame_rate", "num_codebooks", "codebook_size", "text_card")

    def __init__(self, folder, max_codebooks: int | None = None):
        """``folder``: a shard folder, or a list of them (e.g. a corpus and its extension)."""
        folders = [Path(f) for f in (folder if isinstance(folder, (list, tuple)) else [folder])]
        files = []
        for f in folders:
            found = sorted(f.glob("shard-*.safetensors"))
            if not found:
                raise TokenLMError(f"{f}: no token shards (shard-*.safetensors); run recipes/pretokenize.py")
            files += found
        self.codes, self.text, self.ids, self.texts = [], [], [], []
        self.meta = None
        for p in files:
            t, h = read_shard(p)
            got = {k: h.get(k) for k in self.CHECKED}
            if self.meta is None:
                self.meta = got
                self.info = {k: v for k, v in h.items() if k not in ("ids", "texts")}
            elif got != self.meta:
                raise TokenLMError(f"{p}: made with a different codec or tokenizer than {files[0].name}: "
                                   f"{got} != {self.meta}")
            off = t["offsets"].tolist()
            codes = t["codes"].long()
            if max_codebooks:
                codes = codes[:max_codebooks]
            for i in range(len(off) - 1):
                self.codes.append(codes[:, off[i]: off[i + 1]])
                self.text.append(t["text"][off[i]: off[i + 1]].long())
            self.ids += h["ids"]
            self.texts += h["texts"]

    def __len__(self) -> int:
        return len(self.codes)

    def frames(self) -> int:
        return sum(c.shape[1] for c in self.codes)


def augment_codes(codes: torch.Tensor, generator: torch.Generator, time_masks: int = 0, mask_frames: int = 10,
                  code_noise: float = 0.0, card: int | None = None) -> torch.Tensor:
    """Training-time corruption of input audio codes ``[Q, F]`` (a new tensor; ``codes`` is untouched).

    ``time_masks`` spans of up to ``mask_frames`` frames each (SpecAugment-style) become
    :data:`~tokenlm.lm.streams.ZERO`, "no input", in every codebook; each other code is replaced by a
    uniformly random one of ``card`` with probability ``code_noise``. A model that reads audio it does
    not have to predict (ASR) then cannot lean on any one stretch or on the exact codes of a voice."""
    from .streams import ZERO

    codes = codes.clone()
    q, f = codes.shape
    if code_noise > 0:
        if card is None:
            raise ValueError("code_noise needs card (the codebook size)")
        hit = torch.rand(q, f, generator=generator) < code_noise
        codes[hit] = torch.randint(0, card, (int(hit.sum()),), generator=generator)
    for _ in range(time_masks if f > 0 else 0):
        w = int(torch.randint(0, mask_frames + 1, (1,), generator=generator))
        s = int(torch.randint(0, max(1, f - w + 1), (1,), generator=generator))
        codes[:, s: s + w] = ZERO
    return codes


def collate(items: list[tuple[torch.Tensor, torch.Tensor]], streams: Streams,
            max_frames: int | None = None, generator: torch.Generator | None = None):
    """Stream tensors for a batch of ``(codes [Q, F], text [F])`` utterances.

    Returns ``(delayed [B, K, T + max_delay], valid)`` for the layout ``streams`` (a text stream
    followed by audio streams ``audio_q`` and optional ``in_q``); utterances longer than
    ``max_frames`` are randomly cropped, shorter ones padded (and marked invalid)."""
    crops = []
    for codes, text in items:
        f = codes.shape[1]
        if max_frames and f > max_frames:
            s = int(torch.randint(0, f - max_frames + 1, (1,), generator=generator))
            codes, text = codes[:, s: s + max_frames], text[s: s + max_frames]
        crops.append((codes, text))
    t = max(c.shape[1] for c, _ in crops)
    rows = []
    for codes, text in crops:
        f = codes.shape[1]
        row = []
        for spec in streams:
            if spec.kind == "text":
                x = torch.full((t,), spec.pad_id, dtype=torch.long)
                x[:f] = text
            else:
                q = int(spec.name.rsplit("_", 1)[1])
                x = torch.zeros(t, dtype=torch.long)
                x[:f] = codes[q]
            row.append(x)
        rows.append(torch.stack(row))
    lengths = torch.tensor([c.shape[1] for c, _ in crops])
    return apply_delays(torch.stack(rows), streams, lengths=lengths)
