"""Phone labels at codec frame rate, from a manifest's phone timings (``build_corpus.py --phones``).

The two engines speak different phone sets (flite: CMU phones and ``pau``; espeak-ng: its own
mnemonics, pauses ``_...``), so a class is ``engine:phone``. Pauses carry no label: a frame gets
the phone under its centre, or none (-100, ignored by cross-entropy).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from tokenlm.errors import TokenLMError

__all__ = ["PAUSES", "IGNORE", "frame_labels", "phone_inventory", "label_tensor"]

PAUSES = ("pau", "_")
IGNORE = -100


def _is_pause(phone: str) -> bool:
    return phone.startswith(PAUSES)


def frame_labels(phones: list[dict], num_frames: int, frame_rate: float, prefix: str,
                 offset: float = 0.0) -> list[str | None]:
    """The phone under each frame's centre (None: a pause, or no phone there).

    Frame ``t`` covers ``offset + [t, t + 1) / frame_rate`` seconds of the utterance
    (``offset``: where a crop starts)."""
    out: list[str | None] = []
    k = 0
    for t in range(num_frames):
        c = offset + (t + 0.5) / frame_rate
        while k < len(phones) and phones[k]["end"] <= c:
            k += 1
        if k < len(phones) and phones[k]["start"] <= c < phones[k]["end"] and not _is_pause(phones[k]["phone"]):
            out.append(f"{prefix}:{phones[k]['phone']}")
        else:
            out.append(None)
    return out


def phone_inventory(entries: Iterable[dict]) -> list[str]:
    """Sorted ``engine:phone`` classes over the entries that have phone timings (pauses excluded)."""
    seen = {f"{e.get('engine', '')}:{p['phone']}" for e in entries for p in e.get("phones") or ()
            if not _is_pause(p["phone"])}
    return sorted(seen)


def label_tensor(entry: dict, classes: dict[str, int], num_frames: int, frame_rate: float,
                 offset: float = 0.0) -> torch.Tensor:
    """Class index per frame (``IGNORE`` where there is no phone, the entry has no timings,
    or its phone is not among ``classes``: an inventory built on other data)."""
    phones = entry.get("phones")
    if not phones:
        return torch.full((num_frames,), IGNORE, dtype=torch.long)
    names = frame_labels(phones, num_frames, frame_rate, entry.get("engine", ""), offset)
    return torch.tensor([classes.get(n, IGNORE) if n else IGNORE for n in names], dtype=torch.long)


def check_inventory(classes: list[str]) -> None:
    if not classes:
        raise TokenLMError("no phone timings in the training manifest: build the corpus with "
                           "build_corpus.py --phones, or leave --phone-weight at 0")
