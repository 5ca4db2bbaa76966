"""Codec speed on the CPU: tokenlm's default codec beside EnCodec 24 kHz (6 kbps), same run.

    python benchmarks/codec_speed.py [--threads 1] [--seconds 10] [--repeats 5] [--json out.json]

Reports, for each codec, the median wall time to encode and decode ``--seconds`` of
speech (the bundled sample, looped) and the real-time factor (audio seconds per second
of compute, higher is faster), the ratio between the two codecs, and tokenlm's
streaming cost per 40 ms frame (encode + decode one frame at a time). Machines here
are shared and noisy: compare the ratio, measured in one run, rather than absolute times.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

import tokenlm.codecs as tc
from tokenlm.audio import load_audio

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "data" / "sample.wav"


def timed(fn, repeats: int) -> list[float]:
    fn()  # warm-up: allocator, oneDNN primitive cache
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def speech(seconds: float, sample_rate: int) -> torch.Tensor:
    wav, _ = load_audio(SAMPLE, sample_rate=sample_rate, channels=1)
    n = int(seconds * sample_rate)
    return wav.repeat(1, -(-n // wav.shape[-1]))[:, :n][None]  # [1, 1, T]


def bench_offline(codec, seconds: float, repeats: int, num_codebooks=None) -> dict:
    wav = speech(seconds, codec.sample_rate)
    codes = codec.encode(wav, num_codebooks)
    enc = statistics.median(timed(lambda: codec.encode(wav, num_codebooks), repeats))
    dec = statistics.median(timed(lambda: codec.decode(codes), repeats))
    return {
        "codec": codec.name,
        "bitrate_kbps": codec.bitrate(codes.shape[1]) / 1000,
        "encode_s": enc,
        "decode_s": dec,
        "rtf_x": seconds / (enc + dec),
    }


def bench_streaming(codec, frames: int) -> dict:
    wav = speech(frames * codec.hop_length / codec.sample_rate, codec.sample_rate)
    hop = codec.hop_length
    with codec.streaming(1):
        for i in range(3):  # warm-up
            codec.decode(codec.encode(wav[..., i * hop : (i + 1) * hop]))
        times = []
        for i in range(frames):
            t = time.perf_counter()
            codec.decode(codec.encode(wav[..., i * hop : (i + 1) * hop]))
            times.append(time.perf_counter() - t)
    times.sort()
    frame_ms = 1000 * hop / codec.sample_rate
    return {
        "frame_ms": frame_ms,
        "median_ms": 1000 * statistics.median(times),
        "p95_ms": 1000 * times[int(0.95 * (len(times) - 1))],
        "fraction_of_frame": statistics.median(times) * 1000 / frame_ms,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--codec", default="default", help="tokenlm codec name or checkpoint path")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--stream-frames", type=int, default=100)
    p.add_argument("--no-encodec", action="store_true", help="skip the EnCodec reference")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", tc.UntrainedCodecWarning)
        ours = tc.load(args.codec)
    results = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.processor() or platform.machine()}, {args.threads} thread(s), torch {torch.__version__}",
        "seconds": args.seconds,
        "tokenlm": bench_offline(ours, args.seconds, args.repeats),
        "tokenlm_streaming": bench_streaming(ours, args.stream_frames),
        "tokenlm_trained": bool(getattr(ours, "trained", True)),
    }
    rows = [("tokenlm " + args.codec, results["tokenlm"])]
    if not args.no_encodec:
        from tokenlm.codecs.encodec_backend import EncodecCodec

        torch.manual_seed(0)  # random weights: speed does not depend on them
        enc = EncodecCodec(model="24khz", pretrained=False)
        results["encodec_24khz_6kbps"] = bench_offline(enc, args.seconds, args.repeats, num_codebooks=8)
        results["speedup_vs_encodec"] = results["tokenlm"]["rtf_x"] / results["encodec_24khz_6kbps"]["rtf_x"]
        rows.append(("encodec 24 kHz", results["encodec_24khz_6kbps"]))

    print(f"{args.seconds:g} s of speech, {results['machine']}, {results['date']}")
    print(f"{'codec':22s} {'kbps':>6s} {'encode s':>9s} {'decode s':>9s} {'x real time':>12s}")
    for name, r in rows:
        print(f"{name:22s} {r['bitrate_kbps']:6.2f} {r['encode_s']:9.3f} {r['decode_s']:9.3f} {r['rtf_x']:12.1f}")
    if "speedup_vs_encodec" in results:
        print(f"tokenlm / encodec speed ratio: {results['speedup_vs_encodec']:.1f}x")
    s = results["tokenlm_streaming"]
    print(f"streaming, one {s['frame_ms']:.0f} ms frame at a time (encode+decode): median {s['median_ms']:.2f} ms, "
          f"p95 {s['p95_ms']:.2f} ms = {100 * s['fraction_of_frame']:.1f}% of the frame")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
