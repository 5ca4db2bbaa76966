"""Batches of fixed-length audio crops from a manifest, reproducible step by step.

The batch a process sees at training step ``s`` depends only on (seed, s, rank), never
on what came before, so a run resumed from a checkpoint at step ``s`` reads exactly
the batches an uninterrupted run would have read. Crops shorter than the segment are
zero-padded and come with a mask of the real samples, and (given a phone inventory) with
the phone class under each codec frame (:mod:`tokenlm.data.phones`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from tokenlm.audio import convert_channels, resample
from tokenlm.data.phones import IGNORE, label_tensor
from tokenlm.errors import AudioError


class CropDataset(Dataset):
    """Items are keyed by ``(index, crop_seed)``; ``crop_seed < 0`` takes the crop from the start.

    ``phone_classes`` (``engine:phone`` -> index) and ``hop_length`` add ``phones``: ``[segment //
    hop_length]`` class indices, -100 where there is no phone (pauses, padding, no timings)."""

    def __init__(self, entries: list[dict], sample_rate: int, segment: int, channels: int = 1,
                 phone_classes: dict[str, int] | None = None, hop_length: int | None = None):
        if not entries:
            raise AudioError("no audio to train on: the manifest is empty")
        if phone_classes is not None and not hop_length:
            raise ValueError("phone labels need the codec's hop_length")
        self.entries, self.sample_rate, self.segment, self.channels = entries, sample_rate, segment, channels
        self.phone_classes, self.hop_length = phone_classes, hop_length

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        idx, crop_seed = key
        path = self.entries[idx]["audio"]
        try:
            info = sf.info(path)
        except Exception as e:
            raise AudioError(f"{path}: cannot read audio ({e})") from None
        sr = info.samplerate
        want = -(-self.segment * sr // self.sample_rate)  # source samples for one segment
        start = 0
        if crop_seed >= 0 and info.frames > want:
            start = int(np.random.default_rng(crop_seed).integers(0, info.frames - want + 1))
        data, _ = sf.read(path, start=start, frames=want, dtype="float32", always_2d=True)
        wav = convert_channels(torch.from_numpy(data.T.copy()), self.channels)
        if sr != self.sample_rate:
            wav = resample(wav, sr, self.sample_rate)
        wav = wav[:, : self.segment]
        n = wav.shape[-1]
        mask = torch.zeros(self.segment, dtype=torch.bool)
        mask[:n] = True
        if n < self.segment:
            wav = torch.nn.functional.pad(wav, (0, self.segment - n))
        item = {"wav": wav, "mask": mask, "index": idx}
        if self.phone_classes is not None:
            frames = self.segment // self.hop_length
            labels = label_tensor(self.entries[idx], self.phone_classes, frames,
                                  self.sample_rate / self.hop_length, start / sr)
            real = -(-n // self.hop_length)  # frames holding any real audio
            labels[real:] = IGNORE
            item["phones"] = labels
        return item


class StepSampler(Sampler):
    """Yields, for steps ``start_step, start_step + 1, ...``, one batch of ``(index, crop_seed)`` keys."""

    def __init__(self, num_items: int, batch_size: int, seed: int, rank: int = 0, start_step: int = 0,
                 num_steps: int | None = None):
        self.num_items, self.batch_size, self.seed, self.rank = num_items, batch_size, seed, rank
        self.start_step, self.num_steps = start_step, num_steps

    def batch(self, step: int) -> list[tuple[int, int]]:
        rng = np.random.default_rng([self.seed, step, self.rank])
        idx = rng.integers(0, self.num_items, self.batch_size)
        seeds = rng.integers(0, 2**31 - 1, self.batch_size)
        return [(int(i), int(s)) for i, s in zip(idx, seeds)]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start_step
        while self.num_steps is None or step < self.start_step + self.num_steps:
            yield self.batch(step)
            step += 1

    def __len__(self) -> int:
        if self.num_steps is None:
            raise TypeError("infinite sampler")
        return self.num_steps


def train_loader(dataset: CropDataset, batch_size: int, seed: int, rank: int = 0, start_step: int = 0,
                 num_workers: int = 0) -> DataLoader:
    """An endless loader: the i-th batch is the batch of step ``start_step + i``."""
    sampler = StepSampler(len(dataset), batch_size, seed, rank, start_step)
    # its own generator: starting an iterator must not draw from the global RNG, which a
    # resumed run restores from the checkpoint (model-side randomness would shift otherwise)
    generator = torch.Generator().manual_seed(seed * 1000 + rank)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, generator=generator,
                      persistent_workers=num_workers > 0, pin_memory=torch.cuda.is_available())


def eval_batches(dataset: CropDataset, batch_size: int, limit: int | None = None, rank: int = 0,
                 world_size: int = 1) -> Iterator[dict]:
    """Fixed crops (from the start of each file) of the first ``limit`` items, split across ranks."""
    n = len(dataset) if limit is None else min(limit, len(dataset))
    keys = [(i, -1) for i in range(rank, n, world_size)]
    for i in range(0, len(keys), batch_size):
        items = [dataset[k] for k in keys[i : i + batch_size]]
        yield {k: torch.stack([torch.as_tensor(it[k]) for it in items]) for k in items[0]}
