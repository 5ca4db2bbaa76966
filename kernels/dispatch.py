"""Choose, once, between Triton kernels and their PyTorch references.

Every kernel in this package has a PyTorch reference with the same signature. The
Triton version is used on CUDA tensors when Triton is importable; everything else runs
the reference. ``TOKENLM_KERNELS=torch`` (or ``triton``) in the environment, or
:func:`set_backend`, forces one side — tests use that to compare the two.
"""

from __future__ import annotations

import os

_VALID = ("auto", "torch", "triton")
_backend = os.environ.get("TOKENLM_KERNELS", "auto").lower()
if _backend not in _VALID:
    raise ValueError(f"TOKENLM_KERNELS must be one of {_VALID}, got {_backend!r}")


def _triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except Exception:
        return False
    return True


HAS_TRITON = _triton_available()


def set_backend(name: str) -> None:
    """Force ``"torch"`` or ``"triton"`` kernels, or ``"auto"`` (Triton on CUDA, else torch)."""
    global _backend
    if name not in _VALID:
        raise ValueError(f"backend must be one of {_VALID}, got {name!r}")
    _backend = name


def get_backend() -> str:
    return _backend


def use_triton(*tensors) -> bool:
    """Whether a call on these tensors should run the Triton version."""
    if _backend == "torch" or not HAS_TRITON:
        return False
    if _backend == "triton":
        return True
    return all(t.is_cuda for t in tensors)
