"""Plot a training run's log.jsonl: training losses (smoothed) and validation metrics against steps.

    python recipes/plot_training.py runs/codec [-o runs/codec/training.png]

A model trained in phases (each a new run continuing from the last one's weights, ``--init-from``)
plots end to end: name the runs in order; each phase's steps follow the previous phase's last
step, a dashed line marks where each began, and ``--first-step`` counts from the steps trained
before the first run named (whose logs are gone).

    python recipes/plot_training.py runs/tts-ph3 runs/tts-ph4 --first-step 11653 -o docs/tts_training.png
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


def read_phases(runs: list[Path], first_step: int = 0) -> tuple[list[dict], list[dict], list[tuple[int, str]]]:
    """(training rows, validation rows, phase starts) of runs trained one after the other: each run's
    steps are shifted to follow the previous run's last step. A missing log raises FileNotFoundError."""
    train, valid, starts, offset = [], [], [], first_step
    for run in runs:
        log = run / "log.jsonl"
        if not log.exists():
            raise FileNotFoundError(f"{log}: no such file")
        rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        starts.append((offset, run.name))
        last = offset
        for r in rows:
            r = {**r, "step": r.get("step", 0) + offset}
            last = max(last, r["step"])
            if "loss" in r:
                train.append(r)
            if any(k.startswith("valid_") for k in r):
                valid.append(r)
        offset = last
    return train, valid, starts


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", type=Path, nargs="+", metavar="RUN",
                   help="run folder holding log.jsonl; several: phases of one model, in order")
    p.add_argument("-o", "--output", type=Path, help="PNG to write (default: the last RUN's training.png)")
    p.add_argument("--smooth", type=int, default=20, help="moving-average window over logged points")
    p.add_argument("--first-step", type=int, default=0, metavar="N",
                   help="steps trained before the first RUN (its steps are plotted from N)")
    args = p.parse_args(argv)
    if args.first_step < 0 or args.smooth < 1:
        p.error("--first-step must be >= 0 and --smooth >= 1")
    try:
        train, valid, starts = read_phases(args.runs, args.first_step)
    except FileNotFoundError as e:
        print(f"plot_training: error: {e}", file=sys.stderr)
        return 1
    except (json.JSONDecodeError, TypeError) as e:
        print(f"plot_training: error: a log line is not a JSON object of numbers ({e})", file=sys.stderr)
        return 1
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
    ax.legend(fontsize=7 if len(keys) > 4 else None, ncol=2 if len(keys) > 4 else 1)
    for ax, k in zip(axes[0][1:], vkeys):
        pts = [(r["step"], r[k]) for r in valid if k in r]
        ax.plot([s for s, _ in pts], [v for _, v in pts], marker="o")
        ax.set_xlabel("step")
        ax.set_title(k.replace("_", " ").replace("wacc/", "word-token accuracy, "))
    if len(starts) > 1 or args.first_step:
        for ax in axes[0]:
            for x, name in starts:
                ax.axvline(x, color="grey", linestyle="--", linewidth=0.8)
                ax.annotate(name, (x, 1.0), xycoords=("data", "axes fraction"), xytext=(3, -12),
                            textcoords="offset points", fontsize=8, color="grey")
    fig.suptitle(" + ".join(r.name for r in args.runs))
    fig.tight_layout()
    out = args.output or args.runs[-1] / "training.png"
    fig.savefig(out, dpi=100)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
