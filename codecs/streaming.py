"""Streaming state for codec modules.

A :class:`StreamingModule` keeps per-batch-item state between calls while streaming is
on. ``with codec.streaming(batch_size):`` creates fresh state in every streaming child
and clears it on exit; ``codec.reset_streaming(mask)`` zeroes the state of chosen batch
items so one session can restart while the others go on. Off streaming, modules run
offline (whole signal, causal padding) and the two give the same result.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, fields, replace

import torch
from torch import nn


@dataclass
class StreamingState:
    """Base for typed state dataclasses. Every tensor field is batch-first."""

    def reset(self, mask: torch.Tensor) -> None:
        """Return the items where ``mask`` [B] is True to their initial (zero) state."""
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                value[mask] = 0


class StreamingModule(nn.Module):
    """A module with optional streaming state. Subclasses implement :meth:`init_state`."""

    _state: StreamingState | None = None

    def init_state(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> StreamingState:
        raise NotImplementedError

    @property
    def is_streaming(self) -> bool:
        return self._state is not None


def streaming_modules(root: nn.Module) -> list[StreamingModule]:
    return [m for m in root.modules() if isinstance(m, StreamingModule)]


@contextmanager
def streaming_context(root: nn.Module, batch_size: int, device: torch.device, dtype: torch.dtype):
    mods = streaming_modules(root)
    if any(m.is_streaming for m in mods):
        raise RuntimeError("already streaming: nested `streaming()` contexts are not supported")
    for m in mods:
        m._state = m.init_state(batch_size, device, dtype)
    try:
        yield
    finally:
        for m in mods:
            m._state = None


def reset_streaming(root: nn.Module, mask: torch.Tensor) -> None:
    for m in streaming_modules(root):
        if m._state is None:
            raise RuntimeError("reset_streaming() called outside a `streaming()` context")
        m._state.reset(mask.to(torch.bool))


@contextmanager
def select_rows(root: nn.Module, rows: torch.Tensor):
    """Inside the block, streaming modules see only the batch items ``rows`` (a long tensor of
    indices, in the order the block's inputs come); their state is written back on exit, and the
    other items' state is untouched. Lets a server step only the sessions that have input."""
    mods = streaming_modules(root)
    if any(m._state is None for m in mods):
        raise RuntimeError("select_rows() called outside a `streaming()` context")
    full = [m._state for m in mods]
    for m, st in zip(mods, full):
        m._state = replace(st, **{f.name: getattr(st, f.name)[rows] for f in fields(st)
                                  if isinstance(getattr(st, f.name), torch.Tensor)})
    try:
        yield
    finally:
        for m, st in zip(mods, full):
            sub = m._state
            for f in fields(st):
                value = getattr(st, f.name)
                if isinstance(value, torch.Tensor):
                    value[rows] = getattr(sub, f.name).to(value.dtype)
            m._state = st
