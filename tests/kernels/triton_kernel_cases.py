"""Triton kernels against their PyTorch references. Not collected by a plain ``pytest`` run
(the file name does not start with ``test_``): ``test_kernels_triton.py`` runs it in a fresh
process, under Triton's CPU interpreter (``TRITON_INTERPRET=1`` has to be set before Triton is
imported) or on a CUDA GPU. By hand:

    TRITON_INTERPRET=1 python -m pytest -q tests/kernels/triton_kernel_cases.py   # CPU
    TOKENLM_TEST_DEVICE=cuda python -m pytest -q tests/kernels/triton_kernel_cases.py  # GPU

Inputs are random, from seeds shifted by ``TOKENLM_KERNEL_SEED`` (the runner draws a new one
each time and reports it on failure; 0 when run by hand). Every Triton output and workspace is pre-filled with NaN / garbage (``poison_outputs``), so
an element a kernel forgets to write fails the comparison. Sizes are small but odd (masks
everywhere) and block sizes are forced small in places, so that loops run several trips.
The interpreter is exact in fp32/fp16; its fp32 -> bf16 casts truncate (one bf16 ulp).
"""

from __future__ import annotations

import os

import pytest
import torch

from tokenlm.kernels import (
    codebook_lookup_sum,
    codebook_lookup_sum_ref,
    decode_attention,
    decode_attention_ref,
    dispatch,
    embedding_sum,
    embedding_sum_ref,
    pack_embedding_tables,
    rvq_encode,
    rvq_encode_ref,
    sample_tokens,
    sample_tokens_ref,
)

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
DEVICE = os.environ.get("TOKENLM_TEST_DEVICE") or ("cpu" if INTERPRET else "cuda")
if DEVICE == "cpu" and not INTERPRET:
    pytest.skip("Triton kernels on the CPU need TRITON_INTERPRET=1", allow_module_level=True)
if DEVICE == "cuda" and not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)

from tokenlm.kernels import codebook_triton, decode_attention_triton, sampling_triton  # noqa: E402

FLOATS = [torch.float32, torch.float16, torch.bfloat16]
SEED = int(os.environ.get("TOKENLM_KERNEL_SEED", "0"))


@pytest.fixture(autouse=True)
def _triton_backend():
    dispatch.set_backend("triton")
    dispatch.poison_outputs(True)
    yield
    dispatch.poison_outputs(False)
    dispatch.set_backend("auto")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed + 1000 * SEED)


def dev(t: torch.Tensor) -> torch.Tensor:
    return t.to(DEVICE)


def ulp_close(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype, scale: float = 1.0) -> None:
    """Equal up to float noise: one ulp of ``dtype`` at ``scale`` (bf16 casts truncate in the interpreter)."""
    tol = {torch.float32: 2e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}[dtype] * scale
    assert a.shape == b.shape
    assert torch.isfinite(a.float()).all(), "unwritten (poisoned) or non-finite elements"
    torch.testing.assert_close(a.float(), b.float(), atol=tol, rtol=tol)


# --- codebook lookup-and-sum


@pytest.mark.parametrize("dtype", FLOATS)
def test_lookup_sum_kernel_matches_reference(dtype):
    g = gen(1)
    codebooks = dev((torch.randn(7, 50, 24, generator=g)).to(dtype))
    codes = dev(torch.randint(0, 50, (3, 37, 5), generator=g)).transpose(1, 2)  # [3, 5, 37], non-contiguous
    ref = codebook_lookup_sum_ref(codes, codebooks)
    out = codebook_lookup_sum(codes, codebooks)  # dispatch, forced to Triton
    assert out.dtype == torch.float32 and out.shape == (3, 24, 37)
    ulp_close(out, ref, torch.float32, scale=4)
    small = codebook_triton.codebook_lookup_sum(codes.int(), codebooks, block_f=16, block_d=16)  # 3 x 2 tiles
    ulp_close(small, ref, torch.float32, scale=4)


def test_lookup_sum_kernel_single_stage_and_codebook_view():
    g = gen(2)
    codebooks = dev(torch.randn(4, 33, 130, generator=g))[:, :, 1:]  # D = 129, strided rows
    codes = dev(torch.randint(0, 33, (1, 1, 5), generator=g))
    out = codebook_lookup_sum(codes, codebooks)
    assert torch.equal(out, codebook_lookup_sum_ref(codes, codebooks))  # one stage: a copy, exact


# --- embedding sum (the same kernel)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_embedding_sum_kernel_matches_reference(dtype):
    g = gen(3)
    vocab = (5, 9, 3)
    tables = [dev(torch.randn(v, 24, generator=g).to(dtype)) for v in vocab]
    ids = dev(torch.stack([torch.randint(-1, v, (2, 11), generator=g) for v in vocab], 1))  # [2, 3, 11], -1 = ZERO
    ids[0, :, 0] = -1  # a position where every stream is ZERO: the zero vector
    ref = embedding_sum_ref(ids, tables)
    assert ref.dtype == dtype
    for form in (tables, pack_embedding_tables(tables)):
        out = embedding_sum(ids, form)
        assert out.dtype == dtype and out.shape == (2, 11, 24)
        ulp_close(out, ref, dtype, scale=4)
    assert torch.equal(embedding_sum(ids, tables)[0, 0], torch.zeros(24, dtype=dtype, device=DEVICE))
    out32 = codebook_triton.embedding_sum(ids, pack_embedding_tables(tables), torch.float32, block_f=4, block_d=16)
    ulp_close(out32, embedding_sum_ref(ids, tables, torch.float32), torch.float32, scale=4)
    stacked = dev(torch.randn(3, 9, 24, generator=g).to(dtype))
    ids2 = ids.clamp(max=8)
    ulp_close(embedding_sum(ids2, stacked), embedding_sum_ref(ids2, stacked), dtype, scale=4)


# --- RVQ encode


def assert_same_codes_up_to_ties(x, codebooks, got, ref, rtol=1e-5):
    """Codes equal, except where the two choices are equally near (float noise decides a tie):
    at the first stage where a vector's codes differ, their distances must agree to ``rtol``."""
    assert got.shape == ref.shape and got.dtype == torch.long
    assert ((got >= 0) & (got < codebooks.shape[1])).all(), "unwritten (poisoned) codes"
    if torch.equal(got, ref):
        return
    b, d, f = x.shape
    r = x.double().transpose(1, 2).reshape(-1, d)
    cb = codebooks.double()
    g, e = got.transpose(0, 1).reshape(codebooks.shape[0], -1), ref.transpose(0, 1).reshape(codebooks.shape[0], -1)
    alive = torch.ones(r.shape[0], dtype=torch.bool, device=r.device)
    for q in range(cb.shape[0]):
        diff = alive & (g[q] != e[q])
        if diff.any():
            dg = ((r[diff] - cb[q][g[q][diff]]) ** 2).sum(-1)
            de = ((r[diff] - cb[q][e[q][diff]]) ** 2).sum(-1)
            torch.testing.assert_close(dg, de, rtol=rtol, atol=rtol * float((r[diff] ** 2).sum(-1).max()))
            alive &= ~diff  # residuals diverge from here on
        r = r - cb[q][e[q]]
    assert alive.float().mean() > 0.9, "too many near-ties to be float noise"


def test_rvq_encode_kernel_exact_ties_go_to_the_lowest_index():
    """Small integers make every distance exact and ties plentiful; duplicated codewords put
    equal candidates in different K blocks. Both versions must agree exactly."""
    g = gen(4)
    cb = torch.randint(-1, 2, (4, 40, 20), generator=g).float()
    cb[:, 20:] = cb[:, :20]  # every codeword twice: indices i and i + 20, in other blocks of 16
    x = torch.randint(-2, 3, (3, 20, 13), generator=g).float()
    x, cb = dev(x), dev(cb)
    ref = rvq_encode_ref(x, cb)
    assert (ref < 20).all()
    assert torch.equal(rvq_encode(x, cb), ref)
    assert torch.equal(codebook_triton.rvq_encode(x, cb, block_n=16, block_k=16), ref)


@pytest.mark.parametrize("dtype", FLOATS)
def test_rvq_encode_kernel_matches_reference(dtype):
    g = gen(5)
    cb = dev(torch.randn(3, 70, 20, generator=g).to(dtype))
    x = dev(torch.randn(2, 19, 20, generator=g).to(dtype)).transpose(1, 2)  # [B, D, F] with D contiguous, as in the codec
    ref = rvq_encode_ref(x, cb)
    assert_same_codes_up_to_ties(x.float(), cb.float(), rvq_encode(x, cb), ref)
    small = codebook_triton.rvq_encode(x, cb, block_n=16, block_k=32)  # 3 programs, 3 K blocks
    assert_same_codes_up_to_ties(x.float(), cb.float(), small, ref)


def test_rvq_encode_kernel_prefix_and_tiny_shapes():
    g = gen(6)
    cb = dev(torch.randn(4, 17, 5, generator=g))  # D = 5 < 16: padded dot
    x = dev(torch.randn(1, 5, 1, generator=g))  # a single vector
    ref = rvq_encode_ref(x, cb)
    assert torch.equal(rvq_encode(x, cb), ref)
    assert torch.equal(rvq_encode(x, cb[:2]), ref[:, :2])  # greedy: fewer codebooks = a prefix


# --- decode attention


def attention_inputs(seed, b, h, hkv, c, hd, dtype):
    g = gen(seed)
    q = torch.randn(b, 1, h, hd, generator=g).transpose(1, 2)[:, :, 0]  # [B, H, hd], strided like LM q
    k = torch.randn(b, hkv, c, hd, generator=g)
    v = torch.randn(b, hkv, c, hd, generator=g)
    valid = torch.rand(b, c, generator=g) > 0.4
    valid[0] = True
    if b > 1:
        valid[1] = False  # nothing to attend to: zeros
    if b > 2:
        k[2, :, ~valid[2]] = float("nan")  # invalid slots must not leak, whatever they hold
        v[2, :, ~valid[2]] = float("inf")
    return dev(q.to(dtype)), dev(k.to(dtype)), dev(v.to(dtype)), dev(valid)


@pytest.mark.parametrize("dtype", FLOATS)
def test_decode_attention_kernel_matches_reference(dtype):
    q, k, v, valid = attention_inputs(7, 3, 6, 2, 45, 24, dtype)  # 3 query heads per kv head, hd = 24
    ref = decode_attention_ref(q, k, v, valid)
    assert torch.equal(ref[1].float(), torch.zeros_like(ref[1].float()))
    out = decode_attention(q, k, v, valid)
    assert out.dtype == dtype
    ulp_close(out, ref, dtype)
    for splits in (1, 3):  # one chunk (direct store) and three chunks (partials + merge)
        out = decode_attention_triton.decode_attention(q, k, v, valid, block_c=16, num_splits=splits)
        ulp_close(out, ref, dtype)


@pytest.mark.parametrize("h,hkv", [(2, 2), (8, 1)])
def test_decode_attention_kernel_head_grouping(h, hkv):
    q, k, v, valid = attention_inputs(8, 2, h, hkv, 20, 16, torch.float32)
    ref = decode_attention_ref(q, k, v, valid, scale=0.3)
    out = decode_attention_triton.decode_attention(q, k, v, valid, scale=0.3, block_c=16, num_splits=2)
    ulp_close(out, ref, torch.float32)


# --- sampling


def sampling_case(seed, b=16, v=300, dtype=torch.float32, ties=False):
    g = gen(seed)
    if ties:
        logits = torch.randint(-3, 3, (b, v), generator=g).float()
        logits[2] = float("-inf")  # all masked: greedy, token 0
        logits[3, 5:] = float("-inf")  # only 5 candidates
    else:
        logits = torch.randn(b, v, generator=g) * 3
    temp = torch.tensor([0.0, 1.0, 0.7, 1.3] * (b // 4))
    top_k = torch.tensor([0, 0, 5, 1, 0, 50, v - 1, v, 7, 0, 0, 3, 0, 10, 0, -2])[:b]
    top_p = torch.tensor([1.0, 0.9, 1.0, 1.0, 0.5, 0.95, 0.3, 1.0, 0.8, 0.0, 1e-3, 0.99, 0.7, 0.6, 1.0, 2.0])[:b]
    u = torch.rand(b, generator=g)
    u[5] = 0.0
    return dev(logits.to(dtype)), dev(temp), dev(top_k), dev(top_p), dev(u)


@pytest.mark.parametrize("block_v", [None, 128])
def test_sample_tokens_kernel_matches_reference(block_v):
    logits, temp, top_k, top_p, u = sampling_case(9)
    ref = sample_tokens_ref(logits, temp, top_k, top_p, u)
    out = sampling_triton.sample_tokens(logits, temp, top_k, top_p, u, block_v=block_v)
    assert out.dtype == torch.long
    assert torch.equal(out, ref)


def test_sample_tokens_kernel_ties_and_masks():
    logits, temp, top_k, top_p, u = sampling_case(10, ties=True)
    for seed in range(2):
        u = dev(torch.rand(u.shape[0], generator=gen(100 + seed)))
        ref = sample_tokens_ref(logits, temp, top_k, top_p, u)
        assert ref[2] == 0 and ref[3] < 5
        assert torch.equal(sample_tokens(logits, temp, top_k, top_p, u), ref)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_sample_tokens_kernel_low_precision_logits_and_scalars(dtype):
    logits, temp, top_k, top_p, u = sampling_case(11, b=8, v=77, dtype=dtype)
    assert torch.equal(sample_tokens(logits, temp, top_k, top_p, u), sample_tokens_ref(logits, temp, top_k, top_p, u))
    # scalar settings broadcast to every row
    ref = sample_tokens_ref(logits, 0.8, 10, 0.9, u)
    assert torch.equal(sample_tokens(logits, 0.8, 10, 0.9, u), ref)
    assert torch.equal(sample_tokens(logits, 0.0, 0, 1.0, u), logits.float().argmax(-1))


# --- through the codec (its inference encode/decode call the entry points)


def test_codec_encode_decode_through_the_kernels(tiny_codec):
    codec = tiny_codec.to(DEVICE)
    wav = dev(torch.randn(2, 1, 8000, generator=gen(12)) * 0.1)
    codes = codec.encode(wav)  # Triton (forced by the fixture)
    dispatch.set_backend("torch")
    ref_codes = codec.encode(wav)
    ref_wav = codec.decode(ref_codes)
    dispatch.set_backend("triton")
    assert codes.shape == ref_codes.shape
    assert (codes == ref_codes).float().mean() > 0.98  # equal but for float-noise ties (tested above)
    torch.testing.assert_close(codec.decode(ref_codes), ref_wav, atol=1e-5, rtol=1e-5)
