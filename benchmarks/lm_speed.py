"""Streaming speed of the token LM on the CPU: ASR and TTS steps, one session and a batch.

    python benchmarks/lm_speed.py [--threads 1] [--asr asr] [--tts tts] [--frames 200] [--int8] [--json out.json]

For each model (the bundled ones by default; an untrained model of the same size stands in when
one is missing, and the report says so) it measures, frame by frame as a live session would run:

- ASR: codec streaming encode of one 40 ms frame + one LM step (text sampled), at batch 1; the
  real-time factor is the frame's duration over that cost;
- TTS: one LM step (text + all codebooks through the depth transformer) + codec streaming decode
  of one frame, at batch 1;
- the LM step alone for 16 sessions batched, and how many sessions that step keeps in real time;
- ASR with the beam search (``Transcriber.session(beam=True)``: width 8, the model's word language
  model) when the model ships one: the frame's cost beside the greedy step's; and the server's ASR
  engine (``tokenlm serve --asr-beam 8``) stepping ``--batch`` sessions, beside the greedy engine.

With ``--int8`` every figure is also taken with the LM's weights in int8 (``tokenlm.lm.quantize``),
in the same run, and the report gives the speed-up of the LM step.

Each figure is a median over ``--frames`` steps after a warm-up. Machines here are shared and
noisy: the ratios to the frame duration are what to compare.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import warnings

import torch


def median_ms(fn, frames: int, warmup: int = 10) -> float:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(frames):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return 1000 * statistics.median(out)


def model_for(task: str, name: str, quantize: str | None = None):
    """The trained model, or an untrained stand-in of the shipped size (flagged)."""
    from tokenlm.errors import TokenLMError
    from tokenlm.lm import LM_PRESETS, LMConfig, Streams, TokenLM
    from tokenlm.lm.checkpoint import load_lm
    from tokenlm.lm.quantize import quantize_lm

    try:
        lm = load_lm(name, quantize=quantize)
        return lm.model, lm.codec_info.get("num_codebooks", 8), True
    except TokenLMError:
        streams = Streams.asr(1000, 1024, 8, 15) if task == "asr" else Streams.tts(1000, 1024, 8, 2)
        cfg = dict(LM_PRESETS["small"], depth_layers=1 if task == "asr" else 2)
        model = TokenLM(LMConfig(streams=streams.to_list(), **cfg)).eval()
        return (quantize_lm(model, quantize) if quantize else model), 8, False


@torch.no_grad()
def bench_task(task: str, name: str, codec, args, g: torch.Generator, frame_ms: float,
               quantize: str | None = None) -> dict:
    from tokenlm.lm import UNGENERATED, LMStreamer

    model, q, trained = model_for(task, name, quantize)
    k = len(model.streams)
    r = {"trained": trained, "parameters_m": round(model.num_parameters() / 1e6, 2)}

    def frame_tokens(b):
        x = torch.full((b, k), UNGENERATED, dtype=torch.long)
        for i, s in enumerate(model.streams):
            if not s.generated:
                x[:, i] = torch.randint(0, s.card, (b,), generator=g)
        return x

    st = LMStreamer(model, 1, compile=args.compile)
    st.start()
    one = frame_tokens(1)
    r["lm_step_ms"] = median_ms(lambda: st.step(one), args.frames)
    with codec.streaming(1):
        if task == "asr":
            wav = torch.randn(1, 1, codec.hop_length, generator=g) * 0.1
            r["codec_ms"] = median_ms(lambda: codec.encode(wav, q), args.frames)
        else:
            codes = torch.randint(0, codec.codebook_size, (1, q, 1), generator=g)
            r["codec_ms"] = median_ms(lambda: codec.decode(codes), args.frames)
    r["frame_cost_ms"] = r["lm_step_ms"] + r["codec_ms"]
    r["real_time_x"] = frame_ms / r["frame_cost_ms"]
    if task == "asr" and trained and not args.compile:
        r.update(bench_beam(name, codec, args, quantize))
    stb = LMStreamer(model, args.batch, compile=args.compile)
    stb.start()
    many = frame_tokens(args.batch)
    r[f"lm_step_batch{args.batch}_ms"] = median_ms(lambda: stb.step(many), max(20, args.frames // 4))
    r[f"sessions_real_time_lm_only_batch{args.batch}"] = round(args.batch * frame_ms
                                                              / r[f"lm_step_batch{args.batch}_ms"], 1)
    return r


def bench_beam(name: str, codec, args, quantize: str | None) -> dict:
    """A streaming session with the beam search (width 8, the model's word language model): the LM
    step for the beam's rows plus the search's bookkeeping, on the bundled sample's codes."""
    from pathlib import Path

    from tokenlm.audio import load_audio
    from tokenlm.lm.tasks import Transcriber

    tr = Transcriber(name, codec=codec, quantize=quantize)
    if tr.word_lm is None:
        return {}
    wav, _ = load_audio(Path(__file__).resolve().parents[1] / "examples" / "data" / "sample.wav",
                        codec.sample_rate, codec.channels)
    codes = tr.encode(wav)
    session = tr.session(beam=True)
    n = codes.shape[1]
    frame = iter(range(10**9))
    # frames cycle through the sample (its text keeps the search busy the way speech does)
    ms = median_ms(lambda: session._frame(codes[:, next(frame) % n]), args.frames)
    out = {"beam_width": tr.beam.beam, "beam_frame_ms": ms}
    # the server's engine (tokenlm serve --asr-beam): every session steps each frame, codec encode
    # included; the greedy engine on the same frames in the same run is the reference
    from tokenlm.lm.realtime import load_engine

    m = wav.shape[1] // codec.hop_length
    pcm = wav[0, : m * codec.hop_length].reshape(m, codec.hop_length)
    for key, kw in (("greedy", {}), ("beam", {"beam": tr.beam})):
        eng = load_engine("asr", tr.lm, max_sessions=args.batch, **kw)
        slots = [eng.open() for _ in range(args.batch)]
        frames = iter(range(10**9))

        def step(eng=eng, slots=slots, frames=frames):
            i = next(frames)
            eng.step({s: pcm[(i + 7 * s) % m] for s in slots})

        out[f"engine_{key}_batch{args.batch}_ms"] = median_ms(step, max(20, args.frames // 4))
    return out


@torch.no_grad()
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--asr", default="asr")
    p.add_argument("--tts", default="tts")
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--int8", action="store_true", help="also measure with the LM's weights in int8")
    p.add_argument("--compile", action="store_true", help="torch.compile the LM's temporal step (for GPUs)")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    import tokenlm.codecs as tc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        codec = tc.load("default").eval()
    frame_ms = 1000 / codec.frame_rate
    results = {"machine": platform.processor() or platform.machine(), "threads": args.threads, "compile": args.compile,
               "date": time.strftime("%Y-%m-%d"), "frame_ms": frame_ms}
    g = torch.Generator().manual_seed(0)

    runs = [(task, name, None) for task, name in (("asr", args.asr), ("tts", args.tts))]
    if args.int8:  # interleaved, so that both paths see the same machine
        runs = [r for task, name, _ in runs for r in ((task, name, None), (task, name, "int8"))]
    for task, name, quantize in runs:
        key = task + ("_" + quantize if quantize else "")
        results[key] = bench_task(task, name, codec, args, g, frame_ms, quantize)
    print(f"# token LM streaming speed, {args.threads} CPU thread(s), {results['machine']}, {results['date']}; "
          f"one frame = {frame_ms:.0f} ms" + ("; temporal step compiled" if args.compile else ""))
    for task, _, quantize in runs:
        key = task + ("_" + quantize if quantize else "")
        r = results[key]
        what = "codec encode" if task == "asr" else "codec decode"
        flag = "" if r["trained"] else "  (untrained stand-in of the shipped size)"
        label = f"{task} (LM in {quantize})" if quantize else task
        print(f"{label}: {r['parameters_m']} M params{flag}\n"
              f"  LM step {r['lm_step_ms']:.2f} ms + {what} {r['codec_ms']:.2f} ms = {r['frame_cost_ms']:.2f} ms "
              f"per frame -> {r['real_time_x']:.1f}x faster than real time "
              f"({100 * r['frame_cost_ms'] / frame_ms:.0f}% of the frame)\n"
              f"  {args.batch} sessions batched: LM step {r[f'lm_step_batch{args.batch}_ms']:.2f} ms "
              f"-> {r[f'sessions_real_time_lm_only_batch{args.batch}']} sessions' worth of real time (LM only)")
        if "beam_frame_ms" in r:
            x = frame_ms / (r["beam_frame_ms"] + r["codec_ms"])
            r["beam_real_time_x"] = round(x, 2)
            print(f"  beam search (width {r['beam_width']}, word LM): {r['beam_frame_ms']:.2f} ms per frame "
                  f"+ codec -> {x:.1f}x faster than real time ({r['beam_frame_ms'] / r['lm_step_ms']:.1f}x "
                  f"the greedy LM step)")
            gk, bk = f"engine_greedy_batch{args.batch}_ms", f"engine_beam_batch{args.batch}_ms"
            r[f"engine_beam_sessions_real_time_batch{args.batch}"] = round(args.batch * frame_ms / r[bk], 1)
            print(f"  server engine, {args.batch} sessions, codec included: greedy {r[gk]:.2f} ms per step, "
                  f"beam {r[bk]:.2f} ms ({r[bk] / r[gk]:.1f}x) -> "
                  f"{r[f'engine_beam_sessions_real_time_batch{args.batch}']} sessions' worth of real time")
        if quantize:
            base = results[task]
            r["lm_step_speedup"] = round(base["lm_step_ms"] / r["lm_step_ms"], 2)
            print(f"  int8 LM step {r['lm_step_speedup']:.2f}x the float one (same run)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
