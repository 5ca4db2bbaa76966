"""tokenlm.kernels: fast paths for the hot loops, each beside a PyTorch reference.

Dispatch (see :mod:`tokenlm.kernels.dispatch`) picks Triton on CUDA and the reference
elsewhere. Triton versions arrive in a later milestone; until then every call runs the
reference, which is what CPU users get anyway.
"""

from .codebook import codebook_lookup_sum, codebook_lookup_sum_ref, rvq_encode, rvq_encode_ref
from .dispatch import HAS_TRITON, get_backend, set_backend

__all__ = [
    "HAS_TRITON",
    "codebook_lookup_sum",
    "codebook_lookup_sum_ref",
    "get_backend",
    "rvq_encode",
    "rvq_encode_ref",
    "set_backend",
]
