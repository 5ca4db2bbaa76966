"""Choose, per call, between Triton kernels and their PyTorch references.

Every kernel in this package has a PyTorch reference with the same signature. The
Triton version is used on CUDA tensors when Triton is installed; everything else runs
the reference. ``TOKENLM_KERNELS=torch`` (or ``triton``) in the environment, or
:func:`set_backend`, forces one side — tests use that to compare the two. Forcing
``triton`` on CPU tensors runs the Triton kernels on the CPU, which only works under
Triton's interpreter (``TRITON_INTERPRET=1`` set before the kernels are first used).

Triton is imported lazily, the first time a Triton kernel is actually picked: importing
``tokenlm.kernels`` never imports it, and a machine without Triton runs the references.
The Triton implementations live in ``<name>_triton.py`` beside the reference module and
expose functions named like the public entry points (see :func:`triton_impl`).

The Triton kernels are inference-only (no autograd): a call in which an input requires
grad while grad mode is on runs the reference, whatever the backend.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import warnings
from collections.abc import Callable

import torch

_VALID = ("auto", "torch", "triton")
_backend = os.environ.get("TOKENLM_KERNELS", "auto").lower()
if _backend not in _VALID:
    raise ValueError(f"TOKENLM_KERNELS must be one of {_VALID}, got {_backend!r}")

# Installed, not imported: the import (and its failure, if any) waits for the first Triton call.
HAS_TRITON = importlib.util.find_spec("triton") is not None

_poison = False
_broken: dict[str, BaseException] = {}


def set_backend(name: str) -> None:
    """Force ``"torch"`` or ``"triton"`` kernels, or ``"auto"`` (Triton on CUDA, else torch)."""
    global _backend
    if name not in _VALID:
        raise ValueError(f"backend must be one of {_VALID}, got {name!r}")
    _backend = name


def get_backend() -> str:
    return _backend


def use_triton(*tensors: torch.Tensor) -> bool:
    """Whether a call on these tensors should run the Triton version."""
    if _backend == "torch":
        return False
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return False  # the Triton kernels have no backward
    if _backend == "triton":
        if not HAS_TRITON:
            raise RuntimeError("TOKENLM_KERNELS=triton (or set_backend('triton')) but Triton is not installed")
        return True
    return HAS_TRITON and all(t.is_cuda for t in tensors)


def triton_impl(module: str, name: str, *tensors: torch.Tensor) -> Callable | None:
    """The Triton function ``name`` from ``tokenlm.kernels.<module>`` if this call should use
    Triton (see :func:`use_triton`), else None (run the reference).

    Under ``auto``, a Triton file that fails to import is reported once and the references run; a
    forced ``triton`` backend raises instead.
    """
    if not use_triton(*tensors):
        return None
    if module in _broken and _backend != "triton":
        return None
    try:
        mod = _load(module)
    except Exception as e:  # a broken Triton install: fall back unless Triton was forced
        if _backend == "triton":
            raise
        _broken[module] = e
        warnings.warn(f"tokenlm.kernels: Triton kernels unavailable ({e!r}); using the PyTorch references",
                      RuntimeWarning, stacklevel=3)
        return None
    return getattr(mod, name)


def _load(module: str):
    return importlib.import_module(f"{__package__}.{module}")


def poison_outputs(enabled: bool = True) -> None:
    """Tests: make Triton wrappers pre-fill their outputs and workspaces with garbage (NaN for
    floats, -7777777 for integers), so that an element a kernel forgets to write is caught."""
    global _poison
    _poison = enabled


def empty(shape, dtype: torch.dtype, device) -> torch.Tensor:
    """``torch.empty`` for kernel outputs, poisoned when :func:`poison_outputs` is on."""
    if not _poison:
        return torch.empty(shape, dtype=dtype, device=device)
    fill = float("nan") if dtype.is_floating_point else -7777777
    return torch.full(shape, fill, dtype=dtype, device=device)
