"""Real engines for the server tests: the bundled models where they exist, tiny random ones
(``toy_lm``) for the modes without a bundled model."""

import warnings
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "examples" / "data" / "sample.wav"


@pytest.fixture(scope="package")
def one_thread():
    """One torch thread while the real engines run: on a small, busy machine two spinning threads
    make every step many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="package")
def real_engines(one_thread, tmp_path_factory):
    """mode -> (engine, "bundled" | "toy") with up to 3 sessions each."""
    from tokenlm.errors import TokenLMError
    from tokenlm.lm.realtime import load_engine, toy_lm
    from tokenlm.server.app import _warm_up

    out = {}
    for mode in ("asr", "duplex", "tts"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                engine, kind = load_engine(mode, max_sessions=3), "bundled"
            except TokenLMError:
                folder = tmp_path_factory.mktemp(f"toy_{mode}")
                toy_lm(mode, folder)
                engine, kind = load_engine(mode, str(folder), max_sessions=3), "toy"
        _warm_up(engine)
        out[mode] = (engine, kind)
    return out
