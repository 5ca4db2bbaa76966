"""Run the Triton kernel cases (``triton_kernel_cases.py``) in a fresh Python process.

``TRITON_INTERPRET=1`` only takes effect if it is set before Triton is imported, and other
tests in this session may have imported Triton already, so the cases run in a subprocess:
under the CPU interpreter always, and on the GPU too when there is one.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tokenlm.kernels import HAS_TRITON

CASES = Path(__file__).with_name("triton_kernel_cases.py")
ROOT = Path(__file__).resolve().parents[2]


def run_cases(extra_env: dict[str, str]) -> None:
    """Run the cases on fresh random inputs (a new seed each time, reported on failure)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRITON_", "TOKENLM_KERNEL"))}
    extra_env = {"TOKENLM_KERNEL_SEED": str(random.randrange(1, 10**6)), **extra_env}
    env.update(extra_env)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(CASES)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    tail = (proc.stdout + proc.stderr)[-6000:]
    assert proc.returncode == 0, f"kernel cases failed ({' '.join(f'{k}={v}' for k, v in extra_env.items())}):\n{tail}"
    assert " passed" in proc.stdout and " skipped" not in proc.stdout, tail


@pytest.mark.skipif(not HAS_TRITON, reason="Triton is not installed")
def test_triton_kernels_match_references_under_the_interpreter():
    run_cases({"TRITON_INTERPRET": "1", "TOKENLM_TEST_DEVICE": "cpu"})


@pytest.mark.skipif(not (HAS_TRITON and torch.cuda.is_available()), reason="needs Triton and a CUDA GPU")
def test_triton_kernels_match_references_on_the_gpu():
    run_cases({"TOKENLM_TEST_DEVICE": "cuda"})
