"""What the training recipes share: atomic checkpoints with a ``latest`` pointer, the run log, the
learning-rate schedule and the record of each invocation."""

from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

__all__ = ["Checkpoints", "drop_log_after", "record_command", "warmup_cosine"]


class Checkpoints:
    """checkpoints/step_NNNNNNN/ folders written to a temporary name then renamed, and a `latest` file."""

    def __init__(self, run: Path, keep: int):
        self.dir, self.keep = Path(run) / "checkpoints", keep

    def latest(self) -> Path | None:
        f = self.dir / "latest"
        if not f.exists():
            return None
        path = self.dir / f.read_text().strip()
        return path if (path / "trainer_state.json").exists() else None

    def save(self, accelerator, step: int, extra: dict) -> Path:
        final = self.dir / f"step_{step:07d}"
        tmp = self.dir / f".step_{step:07d}.tmp"
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp), safe_serialization=True)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            (tmp / "trainer_state.json").write_text(json.dumps({"step": step, **extra}, indent=2))
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            pointer = self.dir / ".latest.tmp"
            pointer.write_text(final.name)
            os.replace(pointer, self.dir / "latest")  # the checkpoint counts only once this lands
            for old in sorted(self.dir.glob("step_*"))[: -self.keep]:
                shutil.rmtree(old, ignore_errors=True)
        accelerator.wait_for_everyone()
        return final


def drop_log_after(log: Path, step: int) -> None:
    """Remove the rows an interrupted run logged past the checkpoint it resumes from."""
    if not log.exists():
        return
    from .fileio import atomic_write

    keep = [line for line in log.read_text().splitlines(keepends=True)
            if line.strip() and json.loads(line).get("step", 0) <= step]
    atomic_write(log, lambda tmp: Path(tmp).write_text("".join(keep)))


def record_command(run: Path, accelerator) -> None:
    with open(Path(run) / "command.txt", "a") as f:
        f.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} processes={accelerator.num_processes} "
                f"device={accelerator.device}\n{shlex.join([sys.executable, *sys.argv])}\n")


def warmup_cosine(warmup: int, total: int, floor: float = 0.1):
    """LambdaLR factor: linear warm-up, then cosine down to ``floor``."""

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))

    return f
