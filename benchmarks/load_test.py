"""Load test of the streaming server: N concurrent websocket clients, each streaming speech at
real-time pace (one 640-sample frame every 40 ms), for N = 1, 2, 3, ... up to --max-clients.

    python benchmarks/load_test.py [--mode duplex] [--max-clients 8] [--seconds 10] [--model M]
                                   [--threads 1] [--audio FILE] [--bound-ms 200] [--json OUT]

It starts ``tokenlm serve`` in a subprocess on a free loopback port (only the mode under test
loaded, ``--max-sessions`` = --max-clients), then for each N runs N clients together. Each client
sends the file (a bundled sample by default, looped) as one audio message per frame on an absolute
schedule, and timestamps the server's acknowledgement of every frame (``{"event": "frame"}``,
which follows the frame's words and, in duplex mode, its audio). Per N it reports:

- per-frame latency p50/p90/p99/max (send -> ack, ms) over all sessions;
- ``rtf``: per session, wall time from the first frame sent to the last frame acknowledged over
  the audio duration sent (1.0 plus the last frame's latency when real time held; the worst
  session is shown);
- ``step`` and ``batch``: the server's mean batched step time and sessions per step (from
  /api/info), and ``load`` = step time / frame period (1.0 = the real-time budget is used up);
- drops/order: every frame acknowledged exactly once, frame indices and sequence numbers
  contiguous and in order (and in duplex mode one audio frame per input frame, in order);
- ``held``: no drops or reordering, p99 latency < --bound-ms, and no growing backlog (the median
  latency of the last quarter of the frames is less than 100 ms above that of the first quarter).

It stops after the first N that does not hold real time (--keep-going: runs all) and prints the
largest N that did. Loopback only; bounded by --seconds per level plus a few seconds of setup.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np

from tokenlm.audio import load_audio
from tokenlm.server import protocol as P
from tokenlm.server.client import Client

REPO = Path(__file__).resolve().parents[1]
DEFAULT_AUDIO = REPO / "examples" / "data" / "sample.wav"


@dataclass
class SessionResult:
    sent: int = 0
    acked: int = 0
    audio_frames: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    order_ok: bool = True
    audio_ok: bool = True
    errors: list[str] = field(default_factory=list)
    rtf: float = float("nan")
    done: bool = False


def percentile(xs, q):
    return float(np.percentile(xs, q)) if len(xs) else float("nan")


async def run_client(url: str, mode: str, pcm: np.ndarray, seconds: float, start_at: float, hop: int,
                     offset: int) -> SessionResult:
    res = SessionResult()
    n_frames = int(seconds * 25)
    period = 1 / 25
    acked_at: dict[int, float] = {}
    async with Client.connect(url, mode) as c:
        expect = {"frame": 0, "audio": 0}

        async def receive():
            async for msg in c:
                now = time.perf_counter()
                if msg.kind == P.CONTROL and msg.data.get("event") == "frame":
                    f, seq = msg.data["frame"], msg.data["seq"]
                    if f != expect["frame"] or seq != f or seq in acked_at:
                        res.order_ok = False
                    expect["frame"] = f + 1
                    acked_at[seq] = now
                elif msg.kind == P.AUDIO:
                    if msg.number != expect["audio"] or msg.pcm.size != hop:
                        res.audio_ok = False
                    expect["audio"] = msg.number + 1
                    res.audio_frames += 1
                elif msg.kind == P.ERROR:
                    res.errors.append(msg.data["error"])
                elif msg.kind == P.CONTROL and msg.data.get("event") == "done":
                    res.done = True

        rx = asyncio.ensure_future(receive())
        await asyncio.sleep(max(0.0, start_at - time.perf_counter()))
        t0 = time.perf_counter()
        total = len(pcm)
        for i in range(n_frames):
            due = t0 + i * period
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            start = (offset + i * hop) % total
            frame = pcm[start: start + hop]
            if frame.size < hop:
                frame = np.concatenate([frame, pcm[: hop - frame.size]])
            await c.send_audio(frame)
            res.sent += 1
        await c.end()
        try:
            await asyncio.wait_for(rx, timeout=30 + seconds)
        except asyncio.TimeoutError:
            rx.cancel()
            res.errors.append("timed out waiting for the server to finish")
    res.acked = len(acked_at)
    res.latencies_ms = [1000 * (acked_at[s] - c.sent_at[s]) for s in sorted(acked_at) if s in c.sent_at]
    if acked_at:
        res.rtf = (max(acked_at.values()) - c.sent_at[0]) / (res.sent * period)
    if mode == "duplex" and res.audio_frames != res.sent:
        res.audio_ok = False
    return res


async def server_stats(http_url: str, mode: str) -> dict:
    async with aiohttp.ClientSession() as s, s.get(http_url + "api/info") as r:
        return (await r.json())["modes"][mode]


async def run_level(url: str, http_url: str, mode: str, n: int, pcm: np.ndarray, seconds: float, hop: int,
                    bound_ms: float) -> dict:
    before = await server_stats(http_url, mode)
    start_at = time.perf_counter() + 0.5
    rng = np.random.default_rng(n)
    # different clients start at different places in the file, and at different phases of a frame
    tasks = [run_client(url, mode, pcm, seconds, start_at + float(rng.uniform(0, 0.04)), hop,
                        int(rng.integers(0, len(pcm) // hop)) * hop) for _ in range(n)]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    after = await server_stats(http_url, mode)
    failures = [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)]
    ok = [r for r in results if isinstance(r, SessionResult)]
    lat = [x for r in ok for x in r.latencies_ms]
    steps = after["steps"] - before["steps"]
    frames = after["frames"] - before["frames"]
    step_ms = 1000 * (after["step_seconds"] - before["step_seconds"]) / steps if steps else float("nan")
    growth = []
    for r in ok:
        q = max(1, len(r.latencies_ms) // 4)
        if len(r.latencies_ms) >= 8:
            growth.append(statistics.median(r.latencies_ms[-q:]) - statistics.median(r.latencies_ms[:q]))
    drops = sum(r.sent - r.acked for r in ok)
    order_ok = all(r.order_ok for r in ok)
    audio_ok = all(r.audio_ok for r in ok)
    errors = failures + [e for r in ok for e in r.errors]
    p99 = percentile(lat, 99)
    held = (not failures and len(ok) == n and drops == 0 and order_ok and audio_ok and not errors
            and p99 < bound_ms and (max(growth) if growth else 0.0) < 100.0)
    return {
        "clients": n, "frames_sent": sum(r.sent for r in ok), "frames_acked": sum(r.acked for r in ok),
        "dropped": drops, "in_order": order_ok, "audio_ok": audio_ok,
        "latency_ms": {"p50": percentile(lat, 50), "p90": percentile(lat, 90), "p99": p99,
                       "max": max(lat) if lat else float("nan")},
        "rtf_per_session": [round(r.rtf, 4) for r in ok], "backlog_growth_ms": max(growth) if growth else None,
        "server_steps": steps, "server_frames": frames, "mean_batch": frames / steps if steps else float("nan"),
        "mean_step_ms": step_ms, "load": step_ms / 40.0, "errors": errors[:5], "held_real_time": held,
    }


def start_server(args) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "tokenlm.cli", "serve", "--host", "127.0.0.1", "--port", "0",
           "--max-sessions", str(args.max_clients), "--threads", str(args.threads), "--device", args.device]
    for m in P.MODES:
        cmd += [f"--{m}", (args.model or m) if m == args.mode else "none"]
    log = open(args.server_log, "w") if args.server_log else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
    deadline = time.monotonic() + 180
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        m = re.search(r"listening on (http://\S+/)", line)
        if m:
            return proc, m.group(1)
    proc.kill()
    raise SystemExit("load_test: the server did not start:\n" + "".join(lines)
                     + (f"(see {args.server_log})" if args.server_log else "(pass --server-log FILE to see why)"))


def fmt(x, nd=0):
    return "-" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{nd}f}"


async def main_async(args) -> dict:
    wav, _ = load_audio(args.audio, 16000, 1)
    pcm = P.to_int16(wav[0].numpy())
    proc, http_url = start_server(args)
    ws_url = http_url.replace("http://", "ws://") + "ws"
    levels = []
    try:
        info = await server_stats(http_url, args.mode)
        hop = info["hop_length"]
        counts = [int(x) for x in args.clients.split(",")] if args.clients else range(1, args.max_clients + 1)
        print(f"load test: {args.mode} on {http_url} ({args.threads} torch thread(s), {args.device}); "
              f"{args.seconds:g} s per level, real time held if p99 < {args.bound_ms:g} ms", flush=True)
        header = (f"{'N':>3} {'frames':>7} {'p50':>6} {'p90':>6} {'p99':>6} {'max':>6} {'rtf':>6} "
                  f"{'step':>6} {'batch':>5} {'load':>5} {'drop':>4} {'order':>5}  held")
        print(header + "\n" + "-" * len(header), flush=True)
        for n in counts:
            r = await run_level(ws_url, http_url, args.mode, n, pcm, args.seconds, hop, args.bound_ms)
            levels.append(r)
            lt = r["latency_ms"]
            print(f"{n:>3} {r['frames_sent']:>7} {fmt(lt['p50']):>6} {fmt(lt['p90']):>6} {fmt(lt['p99']):>6} "
                  f"{fmt(lt['max']):>6} {fmt(max(r['rtf_per_session'], default=float('nan')), 3):>6} "
                  f"{fmt(r['mean_step_ms'], 1):>6} {fmt(r['mean_batch'], 2):>5} {fmt(r['load'], 2):>5} "
                  f"{r['dropped']:>4} {'ok' if r['in_order'] and r['audio_ok'] else 'BAD':>5}  "
                  f"{'yes' if r['held_real_time'] else 'NO'}"
                  + (f"  ({'; '.join(r['errors'])})" if r["errors"] else ""), flush=True)
            if not r["held_real_time"] and not args.keep_going:
                break
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
    best = 0
    for r in levels:
        if not r["held_real_time"]:
            break
        best = r["clients"]
    print(f"largest N that held real time: {best}" + (" (the largest tried)" if levels and best == levels[-1]["clients"]
                                                      else ""))
    return {
        "mode": args.mode, "model": args.model or args.mode, "threads": args.threads, "device": args.device,
        "seconds": args.seconds, "bound_ms": args.bound_ms, "audio": Path(args.audio).name,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "levels": levels, "max_realtime_clients": best,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=["asr", "duplex"], default="duplex")
    p.add_argument("--model", default=None, help="LM folder or bundled name (default: the bundled model of the mode)")
    p.add_argument("--max-clients", type=int, default=8)
    p.add_argument("--clients", default=None, help="comma-separated client counts instead of 1..--max-clients")
    p.add_argument("--seconds", type=float, default=10.0, help="streaming time per level")
    p.add_argument("--threads", type=int, default=1, help="torch threads in the server")
    p.add_argument("--device", default="cpu")
    p.add_argument("--audio", default=str(DEFAULT_AUDIO), help="speech file each client streams (looped)")
    p.add_argument("--bound-ms", type=float, default=200.0, help="p99 latency bound for 'held real time'")
    p.add_argument("--keep-going", action="store_true", help="run every level, even after one fails")
    p.add_argument("--server-log", default=None, help="write the server's log (one line per session) here")
    p.add_argument("--json", default=None, metavar="OUT", help="write the results as JSON")
    args = p.parse_args()
    if args.max_clients < 1 or args.seconds <= 0:
        p.error("--max-clients must be >= 1 and --seconds > 0")
    if args.clients:
        args.max_clients = max(args.max_clients, *[int(x) for x in args.clients.split(",")])
    out = asyncio.run(main_async(args))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
