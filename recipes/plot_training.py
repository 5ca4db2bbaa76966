"""Plot a training run's log.jsonl: training losses (smoothed) and validation metrics against steps.

    python recipes/plot_training.py runs/codec [-o runs/codec/training.png]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def smooth(values: list[float], k: int) -> list[float]:
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= k:
            acc -= values[i - k]
        out.append(acc / min(i + 1, k))
    return out


def series(train: list[dict], valid: list[dict]) -> tuple[list[str], list[str]]:
    """The training losses and validation metrics worth plotting in a run's log rows."""
    # codec runs log mel/l1/commit/...; LM runs log the total loss and one loss per stream (loss/<stream>)
    keys = [k for k in ("mel", "l1", "commit", "phone_ce", "g_adv", "fm", "d_loss") if any(k in r for r in train)]
    if not keys:
        keys = ["loss"] + sorted({k for r in train for k in r if k.startswith("loss/")})
        if len(keys) == 2:  # one stream: its loss is the total
            keys = keys[:1]
    vkeys = [k for k in ("valid_mel", "valid_si_sdr", "valid_phone_acc", "valid_loss", "valid_wer")
             if any(k in r for r in valid)]
    vkeys += sorted({k for r in valid for k in r if k.startswith("valid_wacc/")})
    return keys, vkeys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="run folder holding log.jsonl")
    p.add_argument("-o", "--output", type=Path, help="PNG to write (default RUN/training.png)")
    p.add_argument("--smooth", type=int, default=20, help="moving-average window over logged points")
    args = p.parse_args(argv)
    log = args.run / "log.jsonl"
    if not log.exists():
        print(f"plot_training: error: {log}: no such file", file=sys.stderr)
        return 1
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    train = [r for r in rows if "loss" in r]
    valid = [r for r in rows if any(k.startswith("valid_") for k in r)]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys, vkeys = series(train, valid)
    fig, axes = plt.subplots(1, 1 + len(vkeys), figsize=(5 * (1 + len(vkeys)), 4), squeeze=False)
    ax = axes[0][0]
    for k in keys:
        pts = [(r["step"], r[k]) for r in train if k in r]
        ax.plot([s for s, _ in pts], smooth([v for _, v in pts], args.smooth), label=k)
    ax.set_xlabel("step")
    ax.set_yscale("log")
    ax.set_title(f"training losses ({args.smooth}-point average)")
    ax.legend()
    for ax, k in zip(axes[0][1:], vkeys):
        pts = [(r["step"], r[k]) for r in valid if k in r]
        ax.plot([s for s, _ in pts], [v for _, v in pts], marker="o")
        ax.set_xlabel("step")
        ax.set_title(k.replace("_", " ").replace("wacc/", "word-token accuracy, "))
    fig.suptitle(str(args.run.name))
    fig.tight_layout()
    out = args.output or args.run / "training.png"
    fig.savefig(out, dpi=100)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
