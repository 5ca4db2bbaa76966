import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

_spec = importlib.util.spec_from_file_location(
    "plot_training", Path(__file__).resolve().parents[2] / "recipes" / "plot_training.py"
)
plot_training = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(plot_training)


def test_series_for_codec_and_lm_runs():
    codec = [{"step": 1, "mel": 2.0, "l1": 0.1, "commit": 0.01}]
    assert plot_training.series(codec, [{"step": 1, "valid_mel": 1.9}]) == (["mel", "l1", "commit"], ["valid_mel"])
    phones = [{"step": 1, "mel": 2.0, "l1": 0.1, "commit": 0.01, "phone_ce": 3.0, "phone_acc": 0.2}]
    assert plot_training.series(phones, [{"step": 1, "valid_mel": 1.9, "valid_phone_acc": 0.4}]) == (
        ["mel", "l1", "commit", "phone_ce"], ["valid_mel", "valid_phone_acc"])
    asr = [{"step": 1, "loss": 3.0, "loss/text": 3.0, "acc/text": 0.5}]
    valid = [{"step": 1, "valid_loss": 2.0, "valid_wer": 0.9, "valid_wacc/text": 0.2}]
    assert plot_training.series(asr, valid) == (["loss"], ["valid_loss", "valid_wer", "valid_wacc/text"])
    duplex = [{"step": 1, "loss": 3.0, "loss/text": 1.0, "loss/audio0": 2.0}]
    assert plot_training.series(duplex, []) == (["loss", "loss/audio0", "loss/text"], [])


def test_plot_writes_png_of_an_lm_run(tmp_path):
    rows = [{"step": s, "loss": 5.0 / s, "loss/text": 5.0 / s} for s in range(1, 50)]
    rows += [{"step": 25, "valid_loss": 1.0, "valid_wer": 0.9}, {"step": 49, "valid_loss": 0.8, "valid_wer": 0.8}]
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert plot_training.main([str(tmp_path)]) == 0
    png = (tmp_path / "training.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert plot_training.main([str(tmp_path / "missing")]) == 1


def test_phases_follow_one_another(tmp_path):
    a, b = tmp_path / "ph1", tmp_path / "ph2"
    for run, steps in ((a, range(10, 101, 10)), (b, range(10, 51, 10))):
        run.mkdir()
        rows = [{"step": s, "loss": 1.0 / s} for s in steps] + [{"step": steps[-1], "valid_loss": 0.5}]
        (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    train, valid, starts = plot_training.read_phases([a, b], first_step=1000)
    assert [r["step"] for r in train] == [1000 + s for s in range(10, 101, 10)] + [1100 + s for s in range(10, 51, 10)]
    assert [r["step"] for r in valid] == [1100, 1150] and starts == [(1000, "ph1"), (1100, "ph2")]
    out = tmp_path / "both.png"
    assert plot_training.main([str(a), str(b), "--first-step", "1000", "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_training.main([str(a), str(tmp_path / "missing")]) == 1
    (b / "log.jsonl").write_text("{not json\n")
    assert plot_training.main([str(a), str(b)]) == 1
