"""Full-duplex frame cost on the CPU: codec encode of the user's 40 ms + one LM step (text and the
model's codebooks) + codec decode of the model's 40 ms, through the same engine the server runs.

    python benchmarks/duplex_speed.py [--model duplex] [--threads 1] [--sessions 1 2 4 8] [--json out.json]

For one session on ``--threads`` threads it reports the median cost of each part and of the whole
frame, as a share of the frame's duration (the target: <= 50% on one thread); then, for N sessions
stepped together in one batch, the cost of a batched frame and whether it stays under one frame
period (the sessions hold real time). Without a trained model, a random model of the same size
stands in (flagged). Machines here are shared and noisy: compare the shares, not milliseconds.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
import warnings

import torch


def timed(fn, frames: int, warmup: int = 10) -> float:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(frames):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return 1000 * statistics.median(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="duplex")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--sessions", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--batch-threads", type=int, default=2, help="threads for the batched sessions")
    p.add_argument("--frames", type=int, default=100)
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")
    from tokenlm.errors import TokenLMError
    from tokenlm.lm.realtime import load_engine, toy_lm

    trained = True
    model = args.model
    try:
        load_engine("duplex", model, max_sessions=1)
    except TokenLMError:
        trained = False
        tmp = tempfile.mkdtemp()
        model = toy_lm("duplex", tmp)
        print(f"no duplex model '{args.model}': timing a random stand-in (tiny preset)", file=sys.stderr)
    g = torch.Generator().manual_seed(0)

    torch.set_num_threads(args.threads)
    eng = load_engine("duplex", model, max_sessions=1)
    s = eng.open()
    hop, frame_ms = eng.hop_length, 1000 / eng.frame_rate
    x = torch.randn(hop, generator=g) * 0.05
    for _ in range(eng.lag + 2):
        eng.step({s: x})
    whole = timed(lambda: eng.step({s: x}), args.frames)
    enc = timed(lambda: eng._encode({s: x}, [s]), args.frames)
    codes = eng._encode({s: x}, [s])[s]
    dec = timed(lambda: eng._decode({s: codes}), args.frames)
    provided = torch.zeros(1, len(eng.streams), dtype=torch.long)
    from tokenlm.lm.streams import UNGENERATED

    provided[0, eng.text] = UNGENERATED
    provided[0, eng.audio] = UNGENERATED
    provided[0, eng.inputs] = codes
    lm = timed(lambda: eng._lm_step(provided, [s]), args.frames)
    single = {"threads": args.threads, "frame_ms": frame_ms, "encode_ms": round(enc, 2), "lm_step_ms": round(lm, 2),
              "decode_ms": round(dec, 2), "frame_total_ms": round(whole, 2),
              "share_of_frame": round(whole / frame_ms, 3), "real_time_factor": round(frame_ms / whole, 2)}
    print(f"one duplex session, {args.threads} thread(s): encode {enc:.2f} ms + LM step {lm:.2f} ms + decode "
          f"{dec:.2f} ms; whole frame {whole:.2f} ms = {100 * whole / frame_ms:.0f}% of the {frame_ms:.0f} ms frame "
          f"({frame_ms / whole:.1f}x real time)")
    torch.set_num_threads(args.batch_threads)
    batched = []
    for n in args.sessions:
        eng = load_engine("duplex", model, max_sessions=n)
        slots = [eng.open() for _ in range(n)]
        frames = {r: torch.randn(hop, generator=g) * 0.05 for r in slots}
        ms = timed(lambda e=eng, f=frames: e.step(f), max(20, args.frames // 2))
        batched.append({"sessions": n, "threads": args.batch_threads, "frame_ms": round(ms, 2),
                        "share_of_frame": round(ms / frame_ms, 3), "real_time": ms < frame_ms})
        print(f"{n} sessions batched, {args.batch_threads} thread(s): {ms:.2f} ms per frame = "
              f"{100 * ms / frame_ms:.0f}% of the frame -> {'real time' if ms < frame_ms else 'NOT real time'}")
    result = {"model": str(args.model), "trained": trained, "machine": platform.processor() or platform.machine(),
              "torch": torch.__version__, "single": single, "batched": batched}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
