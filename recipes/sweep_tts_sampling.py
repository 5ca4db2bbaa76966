"""Choose a TTS model's sampling: the pocketsphinx WER of its speech for held-out sentences under
several sampling settings, each over several seeds.

    python recipes/sweep_tts_sampling.py --model tts --manifest data/corpus60/valid.jsonl \\
        --setting 0.7:50:0.7 --setting 0.7:50:0 --setting 0.5:50:0 --seeds 3000 4000 --out-dir eval/sampling

A setting is ``TEMPERATURE:TOP_K:TIMING_TEMPERATURE``: the speech codes sampled at TEMPERATURE among
the TOP_K likeliest, and where each word starts (the text stream's choice between waiting and the
next word) at TIMING_TEMPERATURE, 0 being greedy (``Speaker.speak``'s arguments). The sentences are
spoken in batches (``--batch``; batch j of a seed S is sampled from seed S + j * batch), so a sweep
is faster than ``eval_tts.py`` but its samples are not the same as one sentence at a time. Tune on
validation sentences, then measure the chosen setting on the test sentences with ``eval_tts.py``.
``--tail-seconds 0 0.12`` compares how long the speech goes on after the end-of-speech mark
(``Speaker.tail_seconds``) on the same sampled speech. Writes ``tts_sampling.json`` (every
transcript) and ``tts_sampling.md`` (the table).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def parse_setting(text: str) -> tuple[float, int, float]:
    """``"0.5:50:0"`` -> ``(0.5, 50, 0.0)``; ValueError with the reason otherwise."""
    parts = text.split(":")
    if len(parts) != 3:
        raise ValueError(f"{text!r}: expected TEMPERATURE:TOP_K:TIMING_TEMPERATURE, e.g. 0.5:50:0")
    try:
        temperature, top_k, timing = float(parts[0]), int(parts[1]), float(parts[2])
    except ValueError:
        raise ValueError(f"{text!r}: expected numbers, TEMPERATURE:TOP_K:TIMING_TEMPERATURE, e.g. 0.5:50:0") from None
    if min(temperature, top_k, timing) < 0:
        raise ValueError(f"{text!r}: temperatures and top-k must be >= 0")
    return temperature, top_k, timing


def sweep(model: str, sentences: list[str], settings: list[tuple[float, int, float]], seeds: list[int],
          batch: int = 10, progress: bool = True, tails: list[float] | None = None,
          codecs: list[str] | None = None) -> dict:
    """WER (pocketsphinx) of ``model``'s speech for ``sentences`` under each setting and seed,
    for each of ``tails`` (``Speaker.tail_seconds``, the speech after the end-of-speech mark;
    None: its default only) and each of ``codecs`` (decoders of the same codes; None: the model's
    own). The tails share the sampled speech up to the mark; the decoders decode the same codes."""
    from tqdm import tqdm

    import tokenlm.codecs as tc
    from tokenlm.lm.evaluation import Pocketsphinx, wer
    from tokenlm.lm.tasks import Speaker

    sp, ps = Speaker(model), Pocketsphinx()
    tails = [sp.tail_seconds] if tails is None else tails
    decoders = [(None, None)] if not codecs else [(c, tc.load(c).eval()) for c in codecs]
    rows = []
    bar = tqdm(total=len(settings) * len(tails) * len(seeds) * len(sentences), desc="sweep", unit="sentence",
               dynamic_ncols=True, disable=not progress)
    for (temperature, top_k, timing), tail in ((s, t) for s in settings for t in tails):
        sp.tail_seconds = tail
        runs: list[list[dict]] = [[] for _ in decoders]
        for seed in seeds:
            heard, seconds, t0 = [[] for _ in decoders], [0.0] * len(decoders), time.perf_counter()
            for i in range(0, len(sentences), batch):
                codes = sp.sample_batch(sentences[i: i + batch], temperature=temperature, top_k=top_k,
                                        timing_temperature=timing, seed=seed + i)
                for d, (_, codec) in enumerate(decoders):
                    wavs = [sp.decode_pieces(c, codec) for c in codes]
                    heard[d] += [ps.transcribe(w[0]) for w in wavs]
                    seconds[d] += sum(w.shape[-1] for w in wavs) / sp.codec.sample_rate
                bar.update(len(codes))
            for d in range(len(decoders)):
                runs[d].append({"seed": seed, "wer": round(wer(sentences, heard[d]), 4),
                                "audio_seconds": round(seconds[d], 1),
                                "wall_seconds": round(time.perf_counter() - t0, 1), "heard": heard[d]})
        for (name, _), r in zip(decoders, runs):
            rows.append({"temperature": temperature, "top_k": top_k, "timing_temperature": timing,
                         "tail_seconds": tail, **({"codec": name} if name else {}),
                         "wer": round(sum(x["wer"] for x in r) / len(r), 4), "runs": r})
    bar.close()
    return {"model": model, "sentences": sentences, "batch": batch, "seeds": seeds, "settings": rows}


def table(result: dict) -> str:
    seeds = result["seeds"]
    codecs = any("codec" in r for r in result["settings"])
    out = (f"Pocketsphinx WER of the TTS's speech for {len(result['sentences'])} sentences, by sampling setting "
           f"(batches of {result['batch']}; seeds {', '.join(map(str, seeds))})\n\n"
           "| temperature | top-k | word timing | after the end (s) | " + ("decoder | " if codecs else "")
           + "WER (mean) | " + " | ".join(f"seed {s}" for s in seeds)
           + " | speech (min) |\n|---|---|---|---|---|" + "---|" * (len(seeds) + bool(codecs)) + "---|\n")
    for r in result["settings"]:
        timing = "greedy" if r["timing_temperature"] == 0 else f"{r['timing_temperature']:g}"
        minutes = sum(x["audio_seconds"] for x in r["runs"]) / len(r["runs"]) / 60
        decoder = f"{r.get('codec') or 'its own'} | " if codecs else ""
        out += (f"| {r['temperature']:g} | {r['top_k']} | {timing} | {r.get('tail_seconds', 0):g} | {decoder}"
                f"{100 * r['wer']:.1f}% | "
                + " | ".join(f"{100 * x['wer']:.1f}%" for x in r["runs"]) + f" | {minutes:.1f} |\n")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tts", help="TTS checkpoint folder or bundled name")
    p.add_argument("--manifest", type=Path, required=True, help="sentences to speak: the manifest's texts "
                   "(validation sentences: keep the test split for the final measurement)")
    p.add_argument("--limit", type=int, default=None, help="the first N distinct sentences (default: all)")
    p.add_argument("--setting", action="append", required=True, metavar="T:K:TT",
                   help="TEMPERATURE:TOP_K:TIMING_TEMPERATURE (repeat for each setting)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--tail-seconds", type=float, nargs="+", default=None, metavar="S",
                   help="speech after the end-of-speech mark, one or more values (default: the library's, "
                   "tokenlm.lm.tasks.TTS_TAIL_SECONDS)")
    p.add_argument("--codec", nargs="+", metavar="CODEC", help="decode the same sampled codes with each of these "
                   "decoders (codec folders or bundled names with the TTS's codes) instead of the TTS's own")
    p.add_argument("--batch", type=int, default=10, help="sentences spoken at once (default 10)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1; sampling is reproducible "
                   "for a given count)")
    p.add_argument("--out-dir", type=Path, default=Path("eval"))
    args = p.parse_args(argv)
    try:
        settings = [parse_setting(s) for s in args.setting]
    except ValueError as e:
        p.error(f"--setting {e}")
    if args.batch < 1:
        p.error("--batch must be >= 1")
    if args.tail_seconds is not None and not all(t >= 0 for t in args.tail_seconds):
        p.error("--tail-seconds must be >= 0")
    import torch

    from tokenlm.data.manifest import read_manifest
    from tokenlm.lm.evaluation import _write

    sentences = list(dict.fromkeys(e["text"] for e in read_manifest(args.manifest)))[: args.limit]
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, args.threads))
    try:
        result = sweep(args.model, sentences, settings, args.seeds, args.batch, progress=sys.stderr.isatty(),
                       tails=args.tail_seconds, codecs=args.codec)
    finally:
        torch.set_num_threads(threads)
    result["threads"], result["manifest"] = max(1, args.threads), str(args.manifest)
    md = table(result)
    _write(args.out_dir, "tts_sampling", result, md)
    print(md)
    return 0


if __name__ == "__main__":
    from tokenlm.errors import TokenLMError

    try:
        sys.exit(main())
    except TokenLMError as e:
        print(f"sweep_tts_sampling: error: {e}", file=sys.stderr)
        sys.exit(1)
