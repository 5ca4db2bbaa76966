"""The kernels' PyTorch references (they define the semantics) and the dispatcher. No Triton needed."""

from __future__ import annotations

import math
import subprocess
import sys
import types

import pytest
import torch
import torch.nn.functional as F

import tokenlm.kernels as K
from tokenlm.kernels import dispatch


@pytest.fixture(autouse=True)
def _restore_backend():
    yield
    dispatch.set_backend("auto")
    dispatch.poison_outputs(False)


# --- sampling semantics


def probs_logits(p):
    return torch.tensor([p]).log()


def test_kernel_sampling_greedy_rows_take_the_first_argmax():
    logits = torch.tensor([[1.0, 3.0, 3.0, -1.0], [0.0, 0.0, 0.0, 0.0]])
    u = torch.tensor([0.99, 0.99])
    assert K.sample_tokens_ref(logits, torch.tensor([0.0, -1.0]), 0, 1.0, u).tolist() == [1, 0]
    assert K.sample_tokens_ref(logits, 1.0, 1, 1.0, u).tolist() == [1, 0]  # top_k=1 is greedy


def test_kernel_sampling_is_inverse_cdf_in_vocabulary_order():
    logits = probs_logits([0.1, 0.4, 0.2, 0.3])
    for u, tok in [(0.0, 0), (0.05, 0), (0.3, 1), (0.6, 2), (0.95, 3)]:
        assert K.sample_tokens_ref(logits, 1.0, 0, 1.0, torch.tensor([u])).item() == tok


def test_kernel_sampling_top_k_keeps_exactly_k_with_lowest_index_ties():
    logits = torch.tensor([[1.0, 3.0, 3.0, 2.0, 3.0]])
    u = torch.linspace(0, 0.999, 200)
    toks = K.sample_tokens_ref(logits.expand(200, -1), 1.0, 2, 1.0, u)
    assert set(toks.tolist()) == {1, 2}
    assert abs((toks == 1).float().mean().item() - 0.5) < 0.02


def test_kernel_sampling_top_p_keeps_the_smallest_best_ranked_set():
    logits = probs_logits([0.1, 0.4, 0.2, 0.3])  # ranks: 1, 3, 2, 0
    u = torch.linspace(0, 0.999, 700)
    rows = logits.expand(700, -1)
    toks = K.sample_tokens_ref(rows, 1.0, 0, 0.6, u)  # 0.4 < 0.6, 0.4 + 0.3 >= 0.6: keep {1, 3}
    assert set(toks.tolist()) == {1, 3}
    assert abs((toks == 1).float().mean().item() - 4 / 7) < 0.01
    assert set(K.sample_tokens_ref(rows, 1.0, 0, 0.0, u).tolist()) == {1}  # top_p <= 0: the best token
    assert set(K.sample_tokens_ref(rows, 1.0, 0, 0.75, u).tolist()) == {1, 2, 3}
    # top-k first, then top-p over the renormalised survivors: {1: 4/7, 3: 3/7}, 4/7 >= 0.5
    assert set(K.sample_tokens_ref(rows, 1.0, 2, 0.5, u).tolist()) == {1}


def test_kernel_sampling_frequencies_follow_the_tempered_softmax():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 50, generator=g) * 2
    n = 20000
    u = (torch.arange(n) + 0.5) / n  # a uniform grid: frequencies are exact up to 1/n per token
    toks = K.sample_tokens_ref(logits.expand(n, -1), 0.7, 0, 1.0, u)
    freq = torch.bincount(toks, minlength=50).float() / n
    assert (freq - (logits[0] / 0.7).softmax(-1)).abs().max() < 2 / n


def test_kernel_sampling_masked_tokens_and_settings_forms():
    logits = torch.randn(4, 30, generator=torch.Generator().manual_seed(1))
    logits[:, ::2] = float("-inf")
    logits[3] = float("-inf")  # nothing allowed: greedy answer, 0
    u = torch.rand(4, generator=torch.Generator().manual_seed(2))
    toks = K.sample_tokens_ref(logits, 1.0, 0, 1.0, u)
    assert (toks[:3] % 2 == 1).all() and toks[3] == 0
    per_row = K.sample_tokens_ref(logits, torch.full((4,), 0.9), torch.full((4,), 5), torch.full((4,), 0.8), u)
    assert torch.equal(per_row, K.sample_tokens_ref(logits, 0.9, 5, 0.8, u))
    a = K.sample_tokens_ref(logits, 1.0, generator=torch.Generator().manual_seed(3))
    b = K.sample_tokens_ref(logits, 1.0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert torch.equal(K.sample_tokens(logits, 0.9, 5, 0.8, u), per_row)  # CPU: the reference


# --- decode attention


def test_kernel_decode_attention_reference_matches_sdpa_with_grouped_heads():
    g = torch.Generator().manual_seed(4)
    b, h, hkv, c, hd = 3, 8, 2, 29, 16
    q = torch.randn(b, h, hd, generator=g)
    k, v = torch.randn(2, b, hkv, c, hd, generator=g)
    valid = torch.rand(b, c, generator=g) > 0.5
    valid[:, 0] = True
    rep = h // hkv
    want = F.scaled_dot_product_attention(q[:, :, None], k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1),
                                          attn_mask=valid[:, None, None, :])[:, :, 0]
    torch.testing.assert_close(K.decode_attention_ref(q, k, v, valid), want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(K.decode_attention(q, k, v, valid), want, atol=1e-5, rtol=1e-5)
    scaled = K.decode_attention_ref(q, k, v, valid, scale=0.5)
    want = F.scaled_dot_product_attention(q[:, :, None], k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1),
                                          attn_mask=valid[:, None, None, :], scale=0.5)[:, :, 0]
    torch.testing.assert_close(scaled, want, atol=1e-5, rtol=1e-5)


def test_kernel_decode_attention_reference_masked_rows_and_slots():
    q = torch.randn(2, 2, 8)
    k, v = torch.randn(2, 2, 1, 5, 8)
    valid = torch.tensor([[True, False, True, False, False], [False] * 5])
    k[0, :, 1] = float("nan")
    v[0, :, 3] = float("inf")
    out = K.decode_attention_ref(q, k, v, valid)
    assert torch.isfinite(out).all()
    assert torch.equal(out[1], torch.zeros(2, 8))
    only = K.decode_attention_ref(q[:1], k[:1, :, [0, 2]], v[:1, :, [0, 2]], valid[:1, [0, 2]])
    torch.testing.assert_close(out[:1], only)
    with pytest.raises(ValueError):
        K.decode_attention_ref(torch.randn(2, 2, 7), k, v, valid)  # head size differs
    with pytest.raises(ValueError):
        K.decode_attention_ref(q, k, v, valid[:, :4])


# --- embedding sum


def test_kernel_embedding_sum_reference_sums_streams_and_zero_ids():
    g = torch.Generator().manual_seed(5)
    tables = [torch.randn(v, 6, generator=g) for v in (4, 7)]
    ids = torch.tensor([[[0, 3, -1], [6, -1, -1]]])  # [1, 2 streams, 3 steps]
    want = torch.stack([tables[0][0] + tables[1][6], tables[0][3], torch.zeros(6)])[None]
    torch.testing.assert_close(K.embedding_sum_ref(ids, tables), want)
    torch.testing.assert_close(K.embedding_sum(ids, K.pack_embedding_tables(tables)), want)
    stacked = torch.stack([tables[0], tables[1][:4]])
    ids4 = ids.clamp(max=3)
    want4 = K.embedding_sum_ref(ids4, [stacked[0], stacked[1]])
    torch.testing.assert_close(K.embedding_sum_ref(ids4, stacked), want4)
    assert K.embedding_sum_ref(ids, [t.half() for t in tables]).dtype == torch.float16
    assert K.embedding_sum_ref(ids, [t.half() for t in tables], torch.float32).dtype == torch.float32


# --- dispatch


def test_kernel_dispatch_picks_the_reference_on_cpu_and_when_forced():
    x = torch.randn(2, 8, 5)
    cb = torch.randn(3, 11, 8)
    assert not dispatch.use_triton(x, cb)  # auto, CPU tensors
    dispatch.set_backend("torch")
    assert dispatch.triton_impl("codebook_triton", "rvq_encode", x, cb) is None
    assert torch.equal(K.rvq_encode(x, cb), K.rvq_encode_ref(x, cb))
    with pytest.raises(ValueError):
        dispatch.set_backend("cuda")


def test_kernel_dispatch_routes_forced_triton_to_the_triton_module(monkeypatch):
    """The entry points call ``<module>.<name>`` from the Triton file when Triton is chosen
    (a stand-in module here, so that this test needs no Triton)."""
    calls = []
    fake = types.SimpleNamespace(
        rvq_encode=lambda *a: calls.append("rvq_encode") or "triton",
        codebook_lookup_sum=lambda *a: calls.append("codebook_lookup_sum") or "triton",
        embedding_sum=lambda *a: calls.append("embedding_sum") or "triton",
        decode_attention=lambda *a: calls.append("decode_attention") or "triton",
        sample_tokens=lambda *a: calls.append("sample_tokens") or "triton",
    )
    monkeypatch.setattr(dispatch, "HAS_TRITON", True)
    monkeypatch.setattr(dispatch, "_load", lambda module: fake)
    dispatch.set_backend("triton")
    x, cb = torch.randn(1, 4, 3), torch.randn(2, 5, 4)
    assert K.rvq_encode(x, cb) == "triton"
    assert K.codebook_lookup_sum(torch.zeros(1, 2, 3, dtype=torch.long), cb) == "triton"
    assert K.embedding_sum(torch.zeros(1, 2, 3, dtype=torch.long), [cb[0], cb[1]]) == "triton"
    q, kv = torch.randn(1, 2, 4), torch.randn(1, 1, 3, 4)
    assert K.decode_attention(q, kv, kv, torch.ones(1, 3, dtype=torch.bool)) == "triton"
    assert K.sample_tokens(torch.randn(2, 5), 1.0, 0, 1.0, torch.rand(2)) == "triton"
    assert calls == ["rvq_encode", "codebook_lookup_sum", "embedding_sum", "decode_attention", "sample_tokens"]
    # inputs that need gradients always take the reference (the kernels have no backward)
    assert torch.is_tensor(K.rvq_encode(x.requires_grad_(), cb))


def test_kernel_dispatch_falls_back_when_triton_breaks(monkeypatch):
    monkeypatch.setattr(dispatch, "use_triton", lambda *t: True)
    monkeypatch.setattr(dispatch, "_broken", {})

    def broken(module):
        raise ImportError("no GPU backend")

    monkeypatch.setattr(dispatch, "_load", broken)
    with pytest.warns(RuntimeWarning, match="PyTorch references"):
        assert dispatch.triton_impl("codebook_triton", "rvq_encode") is None
    dispatch.set_backend("triton")
    with pytest.raises(ImportError):
        dispatch.triton_impl("codebook_triton", "rvq_encode")


def test_kernel_poisoned_outputs():
    dispatch.poison_outputs(True)
    assert torch.isnan(dispatch.empty((3,), torch.float32, "cpu")).all()
    assert (dispatch.empty((3,), torch.long, "cpu") == -7777777).all()
    dispatch.poison_outputs(False)
    assert dispatch.empty((3,), torch.float32, "cpu").shape == (3,)


def test_kernel_package_import_does_not_import_triton():
    code = "import sys, tokenlm.kernels; assert 'triton' not in sys.modules, 'triton imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_kernel_entry_points_on_cpu_are_the_references():
    g = torch.Generator().manual_seed(6)
    cb = torch.randn(3, 9, 4, generator=g)
    codes = torch.randint(0, 9, (2, 3, 5), generator=g)
    assert torch.equal(K.codebook_lookup_sum(codes, cb), K.codebook_lookup_sum_ref(codes, cb))
    x = torch.randn(2, 4, 5, generator=g)
    assert torch.equal(K.rvq_encode(x, cb), K.rvq_encode_ref(x, cb))
    assert math.isclose(float(K.codebook_lookup_sum(codes[:, :1], cb).abs().sum()),
                        float(cb[0][codes[:, 0]].abs().sum()), rel_tol=1e-6)
