"""Compile the Triton kernels for an H100 (sm_90) without one.

The CPU interpreter runs the kernels' Python, which is more forgiving than the compiler
(types of loop-carried values, layouts, shared-memory budget). Compiling to a cubin needs no
GPU, only Triton's NVIDIA backend and its bundled ptxas, so this test catches kernels that
would not build on the GPU. Configurations follow what the wrappers pick on a GPU; strides
that are 1 in practice are specialised the way Triton specialises them at launch.
"""

from __future__ import annotations

import os

import pytest

from tokenlm.kernels import HAS_TRITON

pytestmark = pytest.mark.skipif(not HAS_TRITON, reason="Triton is not installed")

SMEM_LIMIT = 232448  # bytes of shared memory one H100 block may use


def _compile(kernel, types: dict, constexprs: dict, div16=(), **options):
    from triton import compile as triton_compile
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    names = kernel.arg_names
    signature = {n: "constexpr" if n in constexprs else types.get(n, "i32") for n in names}
    attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in names
             if n not in constexprs and (signature[n].startswith("*") or n in div16)}
    src = ASTSource(fn=kernel, signature=signature, attrs=attrs,
                    constexprs={(names.index(k),): v for k, v in constexprs.items()})
    return triton_compile(src, target=GPUTarget("cuda", 90, 32), options=options)


def _cases():
    from tokenlm.kernels import codebook_triton as cb
    from tokenlm.kernels import decode_attention_triton as at
    from tokenlm.kernels import sampling_triton as st

    ptr = lambda t: "*" + t  # noqa: E731
    enc = {"x_ptr": ptr("fp32"), "cb_ptr": ptr("fp32"), "esq_ptr": ptr("fp32"), "codes_ptr": ptr("i64")}
    enc_div = ("s_xb", "s_xf", "s_cq", "s_ck", "s_ob", "s_oq", "D")
    enc_const = {"Q": 8, "K": 1024, "BLOCK_D": 128, "s_xd": 1, "s_cd": 1, "s_of": 1}
    lookup = {"ids_ptr": ptr("i64"), "off_ptr": ptr("i64")}
    attn = {"q_ptr": ptr("bf16"), "k_ptr": ptr("bf16"), "v_ptr": ptr("bf16"), "valid_ptr": ptr("u8"),
            "out_ptr": ptr("bf16"), "part_o_ptr": ptr("fp32"), "part_m_ptr": ptr("fp32"), "part_l_ptr": ptr("fp32"),
            "qk_scale": "fp32"}
    attn_const = {"BLOCK_G": 2, "BLOCK_C": 32, "BLOCK_D": 64, "s_qd": 1, "s_kd": 1, "s_vd": 1, "s_mc": 1, "s_od": 1}
    attn_div = ("s_qb", "s_qh", "s_kb", "s_kh", "s_kc", "s_vb", "s_vh", "s_vc", "s_mb", "s_ob", "s_oh", "HD")
    sample = {"logits_ptr": ptr("bf16"), "inv_t_ptr": ptr("fp32"), "top_k_ptr": ptr("i64"), "top_p_ptr": ptr("fp32"),
              "u_ptr": ptr("fp32"), "out_ptr": ptr("i64")}
    return {
        "rvq_encode ieee": (cb._rvq_encode_kernel, enc, {**enc_const, "BLOCK_N": 32, "BLOCK_K": 32,
                                                         "DOT_PRECISION": "ieee"}, enc_div, dict(num_warps=4, num_stages=2)),
        "rvq_encode tf32x3": (cb._rvq_encode_kernel, enc, {**enc_const, "BLOCK_N": 64, "BLOCK_K": 64,
                                                           "DOT_PRECISION": "tf32x3"}, enc_div, dict(num_warps=8, num_stages=3)),
        "codebook_lookup_sum": (cb._lookup_sum_kernel, {**lookup, "tab_ptr": ptr("fp32"), "out_ptr": ptr("fp32")},
                                {"Q": 8, "HAS_OFFSETS": False, "BLOCK_F": 64, "BLOCK_D": 64, "s_if": 1, "s_td": 1, "s_of": 1},
                                ("s_ib", "s_iq", "s_tq", "s_tk", "s_ob", "s_od", "F", "D"), dict(num_warps=4)),
        "embedding_sum": (cb._lookup_sum_kernel, {**lookup, "tab_ptr": ptr("bf16"), "out_ptr": ptr("bf16")},
                          {"Q": 10, "HAS_OFFSETS": True, "BLOCK_F": 1, "BLOCK_D": 64, "s_if": 1, "s_td": 1, "s_od": 1,
                           "s_tq": 0}, ("s_ib", "s_iq", "s_tk", "s_ob", "s_of", "D"), dict(num_warps=4)),
        "decode_attention": (at._decode_attn_kernel, attn, {**attn_const, "NUM_SPLITS": 1, "CHUNK": 256}, attn_div,
                             dict(num_warps=4)),
        "decode_attention split": (at._decode_attn_kernel, attn, {**attn_const, "NUM_SPLITS": 4, "CHUNK": 128},
                                   attn_div, dict(num_warps=4)),
        "decode_attention merge": (at._decode_combine_kernel, {"part_o_ptr": ptr("fp32"), "part_m_ptr": ptr("fp32"),
                                                               "part_l_ptr": ptr("fp32"), "out_ptr": ptr("bf16")},
                                   {"NUM_SPLITS": 4, "BLOCK_S": 4, "BLOCK_D": 64, "s_od": 1}, ("s_ob", "s_oh"),
                                   dict(num_warps=4)),
        "sample_tokens": (st._sample_kernel, sample, {"V": 1030, "BLOCK_V": 1024, "TOP_P_FLOOR": 1e-30,
                                                      "LOWEST": -(2**31), "s_lv": 1}, ("s_lb",), dict(num_warps=8)),
    }


NAMES = ["rvq_encode ieee", "rvq_encode tf32x3", "codebook_lookup_sum", "embedding_sum", "decode_attention",
         "decode_attention split", "decode_attention merge", "sample_tokens"]


@pytest.mark.parametrize("name", NAMES)
def test_kernel_compiles_for_sm90(name):
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        pytest.skip("TRITON_INTERPRET is set: the kernels are interpreted functions here")
    try:
        from triton.backends.compiler import GPUTarget  # noqa: F401
        from triton.backends.nvidia.compiler import get_ptxas

        assert os.path.exists(get_ptxas(90).path)  # bundled with Triton; absent on some platforms
    except Exception as e:  # pragma: no cover - depends on the Triton build
        pytest.skip(f"no NVIDIA backend to compile with: {e!r}")
    kernel, types, constexprs, div16, options = _cases()[name]
    compiled = _compile(kernel, types, constexprs, div16, **options)
    assert compiled.asm["cubin"], "no cubin"
    assert compiled.metadata.shared <= SMEM_LIMIT, f"{compiled.metadata.shared} bytes of shared memory"
