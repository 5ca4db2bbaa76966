"""tokenlm.kernels: fast paths for the hot loops, each beside a PyTorch reference.

Dispatch (see :mod:`tokenlm.kernels.dispatch`) picks the Triton version on CUDA tensors and
the reference elsewhere; ``TOKENLM_KERNELS=torch|triton|auto`` or :func:`set_backend` forces
a side. Triton is imported only when a Triton kernel actually runs.

- :func:`codebook_lookup_sum`: RVQ decode, the sum of the selected codewords.
- :func:`rvq_encode`: RVQ encode, greedy nearest-codeword search with residual updates.
- :func:`embedding_sum`: the LM input, the sum of one embedding per stream.
- :func:`decode_attention`: one streaming step's attention over a (ring) KV cache.
- :func:`sample_tokens`: per-row greedy / temperature / top-k / top-p sampling, no host sync.
"""

from .codebook import (
    EmbeddingTables,
    codebook_lookup_sum,
    codebook_lookup_sum_ref,
    embedding_sum,
    embedding_sum_ref,
    pack_embedding_tables,
    rvq_encode,
    rvq_encode_ref,
)
from .decode_attention import decode_attention, decode_attention_ref
from .dispatch import HAS_TRITON, get_backend, set_backend
from .sampling import sample_tokens, sample_tokens_ref

__all__ = [
    "HAS_TRITON",
    "EmbeddingTables",
    "codebook_lookup_sum",
    "codebook_lookup_sum_ref",
    "decode_attention",
    "decode_attention_ref",
    "embedding_sum",
    "embedding_sum_ref",
    "get_backend",
    "pack_embedding_tables",
    "rvq_encode",
    "rvq_encode_ref",
    "sample_tokens",
    "sample_tokens_ref",
    "set_backend",
]
