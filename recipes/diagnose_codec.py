"""Where a codec loses quality: magnitude or phase, silence, spectral bias per band.

    python recipes/diagnose_codec.py --manifest data/corpus/test.jsonl --limit 30 --codec default

For each utterance the codec's output and the original are split into STFT magnitude and
phase (512 points, hop 128) and recombined: STOI and PESQ-WB of

  codec                   the codec's output as it is
  codec magnitude + original phase   what a perfect phase would give (the magnitudes' limit)
  original magnitude + codec phase   what perfect magnitudes would give (the phase's limit)

Plus the level of the output where the original is silent (frames 40 dB below the loudest),
and the mean log-magnitude error per frequency band over active frames (positive: the codec
puts energy where the original has little, e.g. noise between harmonics). Prints a table;
--json writes the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

BANDS = ((0, 300), (300, 600), (600, 1200), (1200, 2400), (2400, 4000), (4000, 8000))
N_FFT, HOP = 512, 128


def _stft(x: np.ndarray) -> torch.Tensor:
    return torch.stft(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), N_FFT, HOP,
                      window=torch.hann_window(N_FFT), return_complex=True)


def _istft(spec: torch.Tensor, n: int) -> np.ndarray:
    return torch.istft(spec, N_FFT, HOP, window=torch.hann_window(N_FFT), length=n).numpy()


def _frame_db(x: np.ndarray, n: int = 320) -> np.ndarray:
    x = x[: len(x) // n * n].reshape(-1, n)
    return 10 * np.log10((x.astype(np.float64) ** 2).mean(1) + 1e-12)


def diagnose_pair(ref: np.ndarray, out: np.ndarray, sample_rate: int = 16000, judge=None) -> dict:
    """Figures for one (original, decoded) pair at 16 kHz, same length. ``judge`` (a recognizer with
    ``transcribe(wav)``, e.g. pocketsphinx) also transcribes the original and each signal."""
    from tokenlm import evaluation as ev

    n = min(len(ref), len(out))
    ref, out = ref[:n], out[:n]
    r, y = _stft(ref), _stft(out)
    mixes = {
        "codec": out,
        "codec_magnitude_original_phase": _istft(y.abs() * torch.exp(1j * r.angle()), n),
        "original_magnitude_codec_phase": _istft(r.abs() * torch.exp(1j * y.angle()), n),
    }
    res = {k: {"stoi": ev.stoi(ref, v, sample_rate), "pesq_wb": ev.pesq_wb(ref, v, sample_rate)}
           for k, v in mixes.items()}
    if judge is not None:
        res["heard"] = {k: judge.transcribe(torch.from_numpy(np.ascontiguousarray(v)).float())
                        for k, v in {"original": ref, **mixes}.items()}
    er, ey = _frame_db(ref), _frame_db(out)
    silent = er < er.max() - 40
    res["silence_db"] = float(np.mean(ey[silent] - er[silent])) if silent.any() else None
    res["silence_level_dbfs"] = float(np.mean(ey[silent])) if silent.any() else None
    power = r.abs().pow(2).sum(0)
    active = 10 * torch.log10(power + 1e-12) > 10 * torch.log10(power.max() + 1e-12) - 40
    err = (20 * torch.log10(y.abs()[:, active] + 1e-5) - 20 * torch.log10(r.abs()[:, active] + 1e-5)).mean(1)
    f = torch.fft.rfftfreq(N_FFT, 1 / sample_rate)
    res["band_bias_db"] = {f"{lo}-{hi}": float(err[(f >= lo) & (f < hi)].mean()) for lo, hi in BANDS}
    return res


def diagnose(utterances, codec, num_codebooks: int | None = None, progress: bool = True, judge=None) -> dict:
    """``judge``: also the word error rate of each signal as that recognizer hears it (the
    utterances need their ``text``)."""
    from tqdm import tqdm

    from tokenlm.audio import load_audio
    from tokenlm.errors import TokenLMError

    if judge is not None and any(not u.text for u in utterances):
        raise TokenLMError("--wer needs a transcript (\"text\" in the manifest) for every utterance")
    rows = []
    for u in tqdm(utterances, desc="diagnose", disable=not progress):
        wav, _ = load_audio(u.path, codec.sample_rate, codec.channels)
        with torch.no_grad():
            out = codec.decode(codec.encode(wav[None], num_codebooks))[0, 0, : wav.shape[-1]]
        rows.append(diagnose_pair(wav[0].numpy(), out.numpy(), codec.sample_rate, judge))
    mean = lambda xs: float(np.mean([x for x in xs if x is not None])) if any(x is not None for x in xs) else None  # noqa: E731
    summary = {k: {m: mean([r[k][m] for r in rows]) for m in ("stoi", "pesq_wb")}
               for k in ("codec", "codec_magnitude_original_phase", "original_magnitude_codec_phase")}
    summary["silence_db"] = mean([r["silence_db"] for r in rows])
    summary["silence_level_dbfs"] = mean([r["silence_level_dbfs"] for r in rows])
    summary["band_bias_db"] = {b: mean([r["band_bias_db"][b] for r in rows]) for b in rows[0]["band_bias_db"]}
    summary["utterances"] = len(rows)
    if judge is not None:
        from tokenlm.lm.evaluation import wer

        texts = [u.text for u in utterances]
        summary["wer"] = {k: wer(texts, [r["heard"][k] for r in rows]) for k in rows[0]["heard"]}
    return summary


def format_report(s: dict) -> str:
    w = s.get("wer")
    lines = ["| signal | STOI | PESQ-WB |" + (" WER |" if w else ""), "|---|---:|---:|" + ("---:|" if w else "")]
    names = {"codec": "codec output", "codec_magnitude_original_phase": "codec magnitude + original phase",
             "original_magnitude_codec_phase": "original magnitude + codec phase"}
    if w:
        lines.append(f"| original | | | {100 * w['original']:.1f}% |")
    for k, label in names.items():
        lines.append(f"| {label} | {s[k]['stoi']:.3f} | {s[k]['pesq_wb']:.2f} |"
                     + (f" {100 * w[k]:.1f}% |" if w else ""))
    lines.append("")
    if s["silence_db"] is not None:
        lines.append(f"Where the original is silent: output at {s['silence_level_dbfs']:.1f} dBFS, "
                     f"{s['silence_db']:+.1f} dB above the original.")
    lines.append("Log-magnitude bias over active frames (codec - original): "
                 + ", ".join(f"{b} Hz {v:+.1f} dB" for b, v in s["band_bias_db"].items()))
    lines.append(f"({s['utterances']} utterances)")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--manifest", required=True, metavar="JSONL")
    p.add_argument("--limit", type=int, default=30)
    p.add_argument("--codec", default="default", help="codec name or checkpoint folder")
    p.add_argument("--codebooks", type=int, help="codebooks to use (default: all)")
    p.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    p.add_argument("--wer", action="store_true", help="also pocketsphinx's word error rate on each signal "
                   "(needs \"text\" in the manifest)")
    args = p.parse_args(argv)
    from tokenlm.errors import TokenLMError
    from tokenlm.evaluation import read_manifest

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        import tokenlm.codecs as tc

        codec = tc.load(args.codec).eval()
        judge = None
        if args.wer:
            from tokenlm.lm.evaluation import Pocketsphinx

            judge = Pocketsphinx()
        s = diagnose(read_manifest(args.manifest, args.limit), codec, args.codebooks, judge=judge)
    except TokenLMError as e:
        print(f"diagnose_codec: {e}", file=sys.stderr)
        return 1
    report = format_report(s)
    print(report)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"codec": args.codec, "codebooks": args.codebooks, **s}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
