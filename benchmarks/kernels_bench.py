"""Triton kernels against their PyTorch references on a CUDA GPU.

    python benchmarks/kernels_bench.py [--reps 50] [--no-flush] [--json out.json]

For every kernel and a few realistic sizes it prints the median time per call (launch
included, CUDA events), the bytes the call must move at least and the bandwidth that makes,
that bandwidth as a percentage of a device-to-device copy measured in the same run, and the
speed-up over the PyTorch reference (plus, where it applies, over the code path the project
uses today: vector-quantize-pytorch's ResidualVQ for the codec, SDPA for LM attention,
``tokenlm.lm.generate.sample`` for sampling). The encode is compute-bound: it reports
TFLOP/s too. The L2 cache is flushed before every timed call unless ``--no-flush``.

Without a CUDA GPU it prints one line and exits 0. ``--allow-cpu`` runs tiny sizes on the
CPU (under ``TRITON_INTERPRET=1``) to smoke-test this script; those timings mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import torch

from tokenlm import kernels as K
from tokenlm.kernels import dispatch

ROWS: list[dict] = []


class Timer:
    def __init__(self, device: torch.device, reps: int, flush: bool):
        self.device, self.reps, self.cuda = device, reps, device.type == "cuda"
        self.scratch = torch.empty(256 << 20, dtype=torch.uint8, device=device) if flush and self.cuda else None

    def __call__(self, fn: Callable[[], object], reps: int | None = None) -> float:
        """Median seconds per call."""
        reps = reps or self.reps
        for _ in range(3):
            fn()
        times = []
        for _ in range(reps):
            if self.scratch is not None:
                self.scratch.zero_()  # evict the previous call's data from L2
            if self.cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end) / 1000)
            else:
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
        return statistics.median(times)


def copy_bandwidth(timer: Timer, device) -> float:
    n = (512 << 20) if timer.cuda else (8 << 20)
    src = torch.empty(n, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    t = timer(lambda: dst.copy_(src), reps=20)
    return 2 * n / t / 1e9


def report(kernel: str, case: str, t_triton: float, nbytes: int, copy_gbs: float, others: dict[str, float],
           flops: float | None = None) -> None:
    gbs = nbytes / t_triton / 1e9
    row = {"kernel": kernel, "case": case, "triton_us": t_triton * 1e6, "GB_s": gbs, "pct_copy": 100 * gbs / copy_gbs}
    if flops:
        row["TFLOP_s"] = flops / t_triton / 1e12
    for name, t in others.items():
        row[f"{name}_us"] = t * 1e6
        row[f"x_{name}"] = t / t_triton
    ROWS.append(row)
    extra = f" {row['TFLOP_s']:6.1f} TFLOP/s" if flops else ""
    vs = "  ".join(f"{name} {t * 1e6:9.1f} us (x{t / t_triton:5.2f})" for name, t in others.items())
    print(f"{kernel:<18} {case:<34} {t_triton * 1e6:9.1f} us {gbs:8.1f} GB/s {row['pct_copy']:5.1f}% copy{extra}  {vs}",
          flush=True)


def with_backend(name: str, fn: Callable[[], object]) -> Callable[[], object]:
    def run():
        dispatch.set_backend(name)
        try:
            return fn()
        finally:
            dispatch.set_backend("auto")
    return run


def residual_vq(dim: int, q: int, k: int, device):
    try:
        from vector_quantize_pytorch import ResidualVQ
    except ImportError:
        return None
    rvq = ResidualVQ(dim=dim, num_quantizers=q, codebook_size=k, kmeans_init=False).to(device).eval()
    return rvq


def bench_codebook(timer: Timer, device, copy_gbs: float, small: bool) -> None:
    d, k, q = (16, 64, 3) if small else (128, 1024, 8)
    cases = [(1, 2)] if small else [(16, 250), (64, 1), (64, 750)]  # (batch, frames): 16 x 10 s, a live frame, 64 x 30 s
    rvq = residual_vq(d, q, k, device)
    g = torch.Generator(device=device).manual_seed(0)
    codebooks = torch.randn(q, k, d, device=device, generator=g)
    if rvq is not None:  # the same codebooks in ResidualVQ
        for layer, cb in zip(rvq.layers, codebooks):
            layer._codebook.embed.copy_(cb[None])
        codebooks = rvq.codebooks.contiguous()
    for b, f in cases:
        codebook_case(timer, copy_gbs, rvq, codebooks, torch.randn(b, d, f, device=device, generator=g), small)


def codebook_case(timer: Timer, copy_gbs: float, rvq, codebooks: torch.Tensor, x: torch.Tensor, small: bool) -> None:
    (b, d, f), (q, k, _) = x.shape, codebooks.shape
    codes = K.rvq_encode_ref(x, codebooks)
    case = f"B={b} F={f} Q={q} K={k} D={d}"
    # decode: lookup-and-sum
    t = timer(with_backend("triton", lambda: K.codebook_lookup_sum(codes, codebooks)))
    others = {"torch": timer(with_backend("torch", lambda: K.codebook_lookup_sum(codes, codebooks)))}
    if rvq is not None:
        idx = codes.transpose(1, 2).contiguous()  # [B, F, Q]
        others["vqpytorch"] = timer(lambda: rvq.get_output_from_indices(idx))
    report("lookup_sum", case, t, codes.numel() * 8 + b * d * f * 4 + q * k * d * 4, copy_gbs, others)
    # encode: fused nearest-codeword search
    t = timer(with_backend("triton", lambda: K.rvq_encode(x, codebooks)))
    others = {"torch": timer(with_backend("torch", lambda: K.rvq_encode(x, codebooks)))}
    if rvq is not None:
        xt = x.transpose(1, 2).contiguous()
        others["vqpytorch"] = timer(lambda: rvq(xt))
    nbytes = x.numel() * 4 + codes.numel() * 8 + q * k * d * 4
    flops = 2.0 * b * f * q * k * d
    report("rvq_encode", case, t, nbytes, copy_gbs, others, flops)
    agree = (with_backend("triton", lambda: K.rvq_encode(x, codebooks))() == codes).float().mean().item()
    line = f"{'':<18} codes equal to the reference: ieee {100 * agree:.3f}%"
    if not small:
        from tokenlm.kernels import codebook_triton

        t3 = timer(lambda: codebook_triton.rvq_encode(x, codebooks, precision="tf32x3"))
        report("rvq_encode tf32x3", case, t3, nbytes, copy_gbs, {"ieee": t}, flops)
        agree3 = (codebook_triton.rvq_encode(x, codebooks, precision="tf32x3") == codes).float().mean().item()
        line += f", tf32x3 {100 * agree3:.3f}%"
    print(line)


def bench_embedding(timer: Timer, device, copy_gbs: float, small: bool) -> None:
    cases = [(2, 3, 1, 32)] if small else [(64, 10, 1, 512), (16, 10, 250, 512)]  # (B, streams, T, D)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    for b, s, t_len, d in cases:
        tables = [torch.randn(1030, d, device=device, dtype=dtype) for _ in range(s)]
        ids = torch.randint(-1, 1030, (b, s, t_len), device=device)
        embedding_case(timer, copy_gbs, tables, ids)


def embedding_case(timer: Timer, copy_gbs: float, tables: list[torch.Tensor], ids: torch.Tensor) -> None:
    (b, s, t_len), d, elt = ids.shape, tables[0].shape[1], tables[0].element_size()
    packed = K.pack_embedding_tables(tables)

    def per_stream():  # what StreamEmbedding does: one lookup, mask and add per stream
        out = None
        for i, table in enumerate(tables):
            e = torch.nn.functional.embedding(ids[:, i].clamp(min=0), table) * (ids[:, i] >= 0)[..., None]
            out = e if out is None else out + e
        return out

    t = timer(with_backend("triton", lambda: K.embedding_sum(ids, packed)))
    others = {"torch": timer(with_backend("torch", lambda: K.embedding_sum(ids, packed))), "per_stream": timer(per_stream)}
    nbytes = ids.numel() * 8 + b * t_len * d * elt + ids.numel() * d * elt
    report("embedding_sum", f"B={b} S={s} T={t_len} D={d} {str(tables[0].dtype)[6:]}", t, nbytes, copy_gbs, others)


def bench_attention(timer: Timer, device, copy_gbs: float, small: bool) -> None:
    if small:
        cases = [(2, 4, 2, 20, 16, torch.float32)]
    else:  # LM presets: small (4 heads / 2 kv, hd 64, 250 frames), base (8 / 4, hd 64, 500 frames)
        cases = [(b, h, hkv, c, 64, torch.bfloat16) for (h, hkv, c) in [(4, 2, 250), (8, 4, 500)] for b in (1, 16, 64)]
        cases.append((16, 8, 4, 500, 64, torch.float32))
    for b, h, hkv, c, hd, dt in cases:
        g = torch.Generator(device=device).manual_seed(1)
        q = torch.randn(b, h, hd, device=device, generator=g).to(dt)
        kc = torch.randn(b, hkv, c, hd, device=device, generator=g).to(dt)
        vc = torch.randn(b, hkv, c, hd, device=device, generator=g).to(dt)
        attention_case(timer, copy_gbs, q, kc, vc, torch.rand(b, c, device=device, generator=g) > 0.1)


def attention_case(timer: Timer, copy_gbs: float, q, kc, vc, valid) -> None:
    (b, h, hd), (_, hkv, c, _) = q.shape, kc.shape
    rep = h // hkv

    def sdpa():  # what LMStreamer does today
        k, v = kc.repeat_interleave(rep, 1), vc.repeat_interleave(rep, 1)
        return torch.nn.functional.scaled_dot_product_attention(q[:, :, None], k, v, attn_mask=valid[:, None, None])

    t = timer(with_backend("triton", lambda: K.decode_attention(q, kc, vc, valid)))
    others = {"torch": timer(with_backend("torch", lambda: K.decode_attention(q, kc, vc, valid))), "sdpa": timer(sdpa)}
    nbytes = 2 * kc.numel() * kc.element_size() + 2 * q.numel() * q.element_size() + valid.numel()
    report("decode_attention", f"B={b} H={h}/{hkv} C={c} hd={hd} {str(q.dtype)[6:]}", t, nbytes, copy_gbs, others)


SAMPLING = [("greedy", 0.0, 0, 1.0), ("temperature 0.8", 0.8, 0, 1.0), ("top_k 250 + top_p 0.9", 0.8, 250, 0.9)]


def bench_sampling(timer: Timer, device, copy_gbs: float, small: bool) -> None:
    for b, v in [(4, 50)] if small else [(16, 1030), (64, 1030), (64, 32000)]:
        g = torch.Generator(device=device).manual_seed(2)
        logits = torch.randn(b, v, device=device, generator=g) * 3
        u = torch.rand(b, device=device, generator=g)
        for name, temp, k, p in SAMPLING:
            sampling_case(timer, copy_gbs, logits, u, name, temp, min(k, v - 1), p)


def sampling_case(timer: Timer, copy_gbs: float, logits, u, name: str, temp: float, k: int, p: float) -> None:
    b, v = logits.shape
    t = timer(with_backend("triton", lambda: K.sample_tokens(logits, temp, k, p, u)))
    others = {"torch": timer(with_backend("torch", lambda: K.sample_tokens(logits, temp, k, p, u)))}
    try:
        from tokenlm.lm.generate import Sampling, sample

        params = Sampling(temperature=temp, top_k=k, top_p=p)
        others["lm.sample"] = timer(lambda: sample(logits, params))
    except Exception:  # the LM package is optional here
        pass
    report("sample_tokens", f"B={b} V={v} {name}", t, logits.numel() * logits.element_size() + b * 8, copy_gbs, others)


def bench_lm_step(timer: Timer, small: bool, device) -> None:
    """The LM streaming step (a TTS-layout 'small' model: text + 8 codebooks through the depth
    transformer, sampled), with the kernels (decode attention, sampling) and without."""
    from tokenlm.lm import LM_PRESETS, LMConfig, LMStreamer, Sampling, Streams, TokenLM

    streams = Streams.tts(1000, 1024, 8, audio_delay=2)
    cfg = dict(LM_PRESETS["tiny" if small else "small"], streams=streams.to_list())
    model = TokenLM(LMConfig(**cfg)).to(device).eval()
    if device.type == "cuda":
        model = model.to(torch.bfloat16)
    for b in (1, 16) if small else (1, 16, 64):
        times = {}
        for name, use in (("kernels", True), ("torch", False)):
            gen = torch.Generator(device=device).manual_seed(0)
            st = LMStreamer(model, b, sampling=Sampling(temperature=0.8, top_k=50), generator=gen, use_kernels=use)
            st.start()
            times[name] = timer(st.step, reps=20 if small else 200)
        t, r = times["kernels"], times["torch"]
        ROWS.append({"kernel": "lm_step", "case": f"batch {b}", "triton_us": t * 1e6, "torch_us": r * 1e6,
                     "x_torch": r / t})
        print(f"{'lm_step':<18} {'batch ' + str(b):<34} {t * 1e6:9.1f} us with kernels, {r * 1e6:9.1f} us without "
              f"(x{r / t:5.2f})", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--no-flush", action="store_true", help="keep the L2 cache warm between calls")
    ap.add_argument("--json", help="also write the rows here")
    ap.add_argument("--allow-cpu", action="store_true", help="smoke-test on the CPU (needs TRITON_INTERPRET=1)")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available() and not args.allow_cpu:
        print("kernels_bench: a CUDA GPU is needed (none found); nothing measured.")
        return 0
    if not dispatch.HAS_TRITON:
        print("kernels_bench: Triton is not installed; nothing measured.")
        return 0
    small = not torch.cuda.is_available()
    if small and os.environ.get("TRITON_INTERPRET", "0") in ("", "0"):
        print("kernels_bench --allow-cpu: set TRITON_INTERPRET=1 to run the Triton kernels on the CPU.")
        return 1
    device = torch.device("cuda" if not small else "cpu")
    timer = Timer(device, 3 if small else args.reps, flush=not args.no_flush)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    import triton

    print(f"device: {name} | torch {torch.__version__} | triton {triton.__version__} | reps {timer.reps} | "
          f"L2 flush {'off' if args.no_flush else 'on'}")
    copy_gbs = copy_bandwidth(timer, device)
    print(f"device-to-device copy: {copy_gbs:.0f} GB/s (read + write)")
    print("speed-ups: x = other time / Triton time (higher: Triton faster)")
    with torch.inference_mode():
        bench_codebook(timer, device, copy_gbs, small)
        bench_embedding(timer, device, copy_gbs, small)
        bench_attention(timer, device, copy_gbs, small)
        bench_sampling(timer, device, copy_gbs, small)
    bench_lm_step(timer, small, device)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"device": name, "copy_GB_s": copy_gbs, "torch": torch.__version__,
                       "triton": triton.__version__, "rows": ROWS}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
