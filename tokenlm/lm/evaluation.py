"""Evaluation of the ASR and TTS models: word error rates, beside an independent recognizer.

- :func:`evaluate_asr`: our transcripts of a manifest's utterances and pocketsphinx's (PyPI
  ``pocketsphinx``, its bundled English model) on the same files, WER overall and per engine.
- :func:`evaluate_tts`: speech for held-out sentences, transcribed by pocketsphinx (an independent
  judge; fair on flite voices) and by our ASR, WER against the sentences.

Both write ``<name>.json`` (per-utterance results) and ``<name>.md`` (the table) to an output folder.
Texts are compared as lower-case words after the corpus's normalisation (numbers spelled out,
punctuation dropped).
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm import tqdm

from ..errors import TokenLMError
from .tasks import TTS_TEMPERATURE, TTS_TIMING_TEMPERATURE, TTS_TOP_K
from .tokenizer import words_of

__all__ = ["wer", "Pocketsphinx", "evaluate_asr", "evaluate_tts", "evaluate_duplex"]


def wer(refs: list[str], hyps: list[str]) -> float:
    """Corpus word error rate (errors / reference words) of normalised texts."""
    import jiwer

    pairs = [(" ".join(words_of(r)), " ".join(words_of(h))) for r, h in zip(refs, hyps)]
    pairs = [(r, h) for r, h in pairs if r]
    if not pairs:
        raise TokenLMError("no reference words to score")
    out = jiwer.process_words([r for r, _ in pairs], [h if h else "" for _, h in pairs])
    return (out.substitutions + out.deletions + out.insertions) / sum(len(r.split()) for r, _ in pairs)


class Pocketsphinx:
    """pocketsphinx's bundled US-English model on 16 kHz mono audio."""

    def __init__(self):
        try:
            from pocketsphinx import Decoder
        except ImportError as e:
            raise TokenLMError(f"pocketsphinx is not installed ({e}): pip install pocketsphinx") from None
        self.decoder = Decoder(samprate=16000, loglevel="FATAL")

    def transcribe(self, wav: torch.Tensor) -> str:
        """``wav [T]`` or ``[1, T]`` float at 16 kHz; the transcript does not depend on earlier calls."""
        pcm = (wav.reshape(-1).clamp(-1, 1) * 32767).round().to(torch.int16).numpy().tobytes()
        d = self.decoder
        # a fresh feature front end: live cepstral mean normalisation (and the noise estimate) would
        # otherwise carry over from the previous file, making a file's transcript depend on what was heard before
        d.reinit_feat()
        d.start_utt()
        d.process_raw(pcm, full_utt=True)
        d.end_utt()
        hyp = d.hyp()
        return hyp.hypstr if hyp is not None else ""


def _write(out_dir: Path, name: str, result: dict, table: str) -> None:
    from ..fileio import atomic_write

    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / f"{name}.json", lambda tmp: Path(tmp).write_text(json.dumps(result, indent=1) + "\n"))
    atomic_write(out_dir / f"{name}.md", lambda tmp: Path(tmp).write_text(table))


def evaluate_asr(model: str, manifest: str | Path, out_dir: str | Path, limit: int | None = None,
                 batch_size: int = 16, pocketsphinx: bool = True, quantize: str | None = None,
                 beam: int | None = None, word_lm=None, join: int = 1, max_seconds: float | None = None,
                 stream: bool = False) -> dict:
    """``beam``/``word_lm``: the decoding, as :class:`~tokenlm.lm.tasks.Transcriber` takes them.
    ``join`` > 1: long recordings, each ``join`` consecutive utterances of one voice end to end,
    transcribed as ``Transcriber.transcribe`` does (in pieces of at most ``max_seconds``, cut at
    pauses; 0: in one go; None: the Transcriber's default). ``stream``: each recording through a
    streaming session (:meth:`~tokenlm.lm.tasks.Transcriber.session`, one at a time; its fresh
    contexts at pauses follow ``max_seconds`` too), greedy unless ``beam`` > 0."""
    from ..audio import load_audio
    from ..data.manifest import read_manifest
    from .tasks import Transcriber

    entries = read_manifest(manifest)[:limit] if limit else read_manifest(manifest)
    if not entries:
        raise TokenLMError(f"{manifest}: no utterances")
    tr = Transcriber(model, quantize=quantize, beam=beam, word_lm=word_lm)
    if max_seconds is not None:
        tr.max_seconds = max_seconds if max_seconds > 0 else float("inf")
    if join > 1:
        by_voice = defaultdict(list)
        for e in entries:
            by_voice[(e.get("engine"), e.get("voice"))].append(e)
        entries = [{**g[0], "id": f"{g[0]['id']}+{len(g) - 1}", "text": " ".join(x["text"] for x in g),
                    "audio": [x["audio"] for x in g]}
                   for es in by_voice.values() for g in (es[i: i + join] for i in range(0, len(es), join))]
    decoding = "greedy" if tr.beam is None else f"beam {tr.beam.beam}" + (" + word LM" if tr.word_lm else "")
    if stream:
        decoding = ("streaming beam search" if beam else "streaming, greedy") + (
            ", one context" if tr.max_seconds == float("inf") else f", a fresh context at a pause once one holds 3 s (at a lesser dip past {tr.max_seconds:g} s)")
    ps = Pocketsphinx() if pocketsphinx else None
    rows, t_ours, t_ps, audio_s = [], 0.0, 0.0, 0.0
    for i in tqdm(range(0, len(entries), batch_size), desc="eval asr", unit="batch", dynamic_ncols=True):
        batch = entries[i: i + batch_size]
        wavs = [torch.cat([load_audio(a, tr.codec.sample_rate, tr.codec.channels)[0]
                           for a in (e["audio"] if isinstance(e["audio"], list) else [e["audio"]])], dim=-1)
                for e in batch]
        audio_s += sum(w.shape[-1] for w in wavs) / tr.codec.sample_rate
        t0 = time.perf_counter()
        if stream:
            streamed = [_stream_words(tr, w, beam=bool(beam)) for w in wavs]
            words, contexts = [w for w, _ in streamed], [n for _, n in streamed]
        elif join > 1:  # long recordings: as transcribe() does them
            words = [tr.transcribe(w) for w in wavs]
        else:
            with torch.no_grad():
                codes = [tr.encode(w) for w in wavs]
            words = tr.transcribe_codes(codes, batch_size=batch_size)
        t_ours += time.perf_counter() - t0
        for j, (e, w, ws) in enumerate(zip(batch, wavs, words)):
            row = {"id": e["id"], "voice": e.get("voice"), "engine": e.get("engine"), "ref": e["text"],
                   "tokenlm": " ".join(x.word for x in ws)}
            if stream:
                row["contexts"] = contexts[j]  # the LM contexts the session used (fresh ones at pauses)
            if ps is not None:
                t0 = time.perf_counter()
                row["pocketsphinx"] = ps.transcribe(w)
                t_ps += time.perf_counter() - t0
            rows.append(row)
    systems = ["tokenlm"] + (["pocketsphinx"] if ps is not None else [])
    groups = defaultdict(list)
    voices = defaultdict(set)
    for r in rows:
        groups["all"].append(r)
        groups[r.get("engine") or "?"].append(r)
        voices[r.get("engine") or "?"].add(r.get("voice"))
    for r in rows:  # an engine with a few voices (flite's) also gets a row per voice
        if 1 < len(voices[r.get("engine") or "?"]) <= 4 and r.get("voice"):
            groups[f"{r.get('engine') or '?'} {r['voice']}"].append(r)
    scores = {g: {s: round(wer([r["ref"] for r in rs], [r[s] for r in rs]), 4) for s in systems} | {"n": len(rs)}
              for g, rs in groups.items()}
    result = {"manifest": str(manifest), "model": str(model), "quantize": quantize, "decoding": decoding,
              "beam_settings": None if tr.beam is None else asdict(tr.beam), "utterances": len(rows),
              "audio_seconds": round(audio_s, 1),
              "wer": scores, "seconds": {"tokenlm": round(t_ours, 1), "pocketsphinx": round(t_ps, 1)}, "rows": rows}
    result["stream"] = stream
    if join > 1:
        result["join"], result["max_seconds"] = join, None if tr.max_seconds == float("inf") else tr.max_seconds
        decoding += f"; recordings of {join} utterances of one voice" + ("" if stream else ", transcribed " + (
            "in one go" if tr.max_seconds == float("inf") else f"in pieces of <= {tr.max_seconds:g} s"))
        result["decoding"] = decoding
    lines = [f"ASR word error rate on {len(rows)} {'recordings' if join > 1 else 'utterances'} ({audio_s / 60:.1f} min) of `{Path(manifest).name}`"
             + (f" (LM weights in {quantize})" if quantize else "") + f"; tokenlm decoding: {decoding}\n",
             "| voices | utterances | " + " | ".join(systems) + " |", "|---|---|" + "---|" * len(systems)]
    for g in ["all"] + sorted(k for k in groups if k != "all"):
        lines.append(f"| {g} | {scores[g]['n']} | " + " | ".join(f"{100 * scores[g][s]:.1f}%" for s in systems) + " |")
    table = "\n".join(lines) + "\n"
    _write(Path(out_dir), "asr_eval", result, table)
    return result


def _stream_words(tr, wav: torch.Tensor, beam: bool = False) -> tuple[list, int]:
    """The words a streaming session gives for ``wav [C, T]`` pushed in 0.2 s chunks, and how many
    LM contexts it used."""
    session = tr.session(beam=beam)
    chunk = int(0.2 * tr.codec.sample_rate)
    words = []
    for i in range(0, wav.shape[-1], chunk):
        words += session.push(wav[:, i: i + chunk])
    return words + session.finish(), len(session.cuts) + 1


def reference_voice_for(voices: str) -> tuple[str, str] | None:
    """The synthetic voice a TTS model imitates, when it was trained on exactly one of the
    corpus's voices (``voices`` as the model header records it, e.g. ``"kal16"``)."""
    from ..data import tts

    names = [v for v in str(voices or "").split(",") if v]
    if len(names) != 1:
        return None
    for engine in ("flite", "espeak-ng"):
        try:
            if names[0] in tts.get_engine(engine).voices():
                return engine, names[0]
        except Exception:  # engine missing on this machine
            continue
    return None


def evaluate_tts(model: str, sentences: list[str], out_dir: str | Path, asr_model: str | None = "asr",
                 seed: int = 0, save_audio: int = 4, reference: tuple[str, str] | str | None = "auto",
                 temperature: float = TTS_TEMPERATURE, top_k: int = TTS_TOP_K, asr_beam: int | None = None,
                 candidates: int = 1, timing_temperature: float = TTS_TIMING_TEMPERATURE,
                 max_words: int | None = None, unit: str = "sentences") -> dict:
    """WER of the model's speech for ``sentences`` as heard by pocketsphinx and by our ASR
    (sampled with ``temperature``, ``top_k`` and ``timing_temperature``, as ``Speaker.speak``; ``asr_beam``: our ASR's
    decoding, as :class:`~tokenlm.lm.tasks.Transcriber` takes ``beam``). ``candidates`` > 1:
    each sentence is the best of that many takes as our ASR hears them (``Speaker.speak``), so
    our ASR's column is then no longer an independent judge; pocketsphinx's still is.
    ``max_words``: ``Speaker.max_words`` (texts longer than that are spoken in pieces; 0: every
    text in one go; None: the Speaker's default). ``unit``: what the table calls the texts
    (``"paragraphs"`` when they are several sentences each).

    ``reference``: also judge the voice the model imitates, ``(engine, voice)``, speaking the same
    sentences through the same codec and codebooks (what a perfect model of that voice would
    score: the judges' and the codec's share of the WER), and once more without the codec (the
    judges' share alone); ``"auto"`` finds it from the model's
    training voices when there is exactly one; None skips it."""
    from ..audio import save_audio as write_audio
    from .duplex import _speak
    from .tasks import Speaker, Transcriber

    ps = Pocketsphinx()
    tr = Transcriber(asr_model, beam=asr_beam) if asr_model else None
    sp = Speaker(model, judge=tr if tr is not None else "asr")
    if max_words is not None:
        sp.max_words = max_words if max_words > 0 else sys.maxsize
    if reference == "auto":
        reference = reference_voice_for(sp.lm.header.get("voices"))
    out_dir = Path(out_dir)
    judges = ["pocketsphinx"] + (["tokenlm_asr"] if tr is not None else [])

    def judge(wav: torch.Tensor) -> dict:
        row = {"pocketsphinx": ps.transcribe(wav[0])}
        if tr is not None:
            row["tokenlm_asr"] = " ".join(w.word for w in tr.transcribe(wav, sp.codec.sample_rate))
        return row

    rows, ref_rows, raw_rows, t_gen, audio_s = [], [], [], 0.0, 0.0
    shown: list[tuple[str, torch.Tensor, torch.Tensor | None]] = []  # for the spectrogram figure
    for i, text in enumerate(tqdm(sentences, desc="eval tts", unit="sentence", dynamic_ncols=True)):
        t0 = time.perf_counter()
        wav = sp.speak(text, seed=seed + i, temperature=temperature, top_k=top_k,
                       timing_temperature=timing_temperature, candidates=candidates)
        t_gen += time.perf_counter() - t0
        audio_s += wav.shape[-1] / sp.codec.sample_rate
        rows.append({"text": text, "seconds": round(wav.shape[-1] / sp.codec.sample_rate, 2), **judge(wav)})
        if i < save_audio:
            write_audio(out_dir / "tts_samples" / f"sample_{i}.wav", wav, sp.codec.sample_rate)
        ref = None
        if reference:
            try:
                ref, _ = _speak(text, reference[0], reference[1], 1.0, 1.0, seed + i)
            except TokenLMError:  # the engine's words do not line up with the text: skip it
                ref = None
        if ref is not None:
            raw_rows.append({"text": text, **judge(ref[None])})
            with torch.no_grad():
                codes = sp.codec.encode(ref[None, None].to(sp.device), num_codebooks=sp.q)
                ref = sp.codec.decode(codes)[0].cpu()
            ref_rows.append({"text": text, **judge(ref)})
            if i < save_audio:
                write_audio(out_dir / "tts_samples" / f"sample_{i}_reference.wav", ref, sp.codec.sample_rate)
        if len(shown) < 2:
            shown.append((text, wav.cpu(), ref))
    scores = {j: round(wer([r["text"] for r in rows], [r[j] for r in rows]), 4) for j in judges}
    result = {"model": str(model), "sentences": len(rows), "audio_seconds": round(audio_s, 1),
              "generation_seconds": round(t_gen, 1), "wer": scores, "voices": sp.voices, "seed": seed,
              "temperature": temperature, "top_k": top_k, "timing_temperature": timing_temperature,
              "candidates": candidates, "tail_seconds": sp.tail_seconds,
              "max_words": None if sp.max_words == sys.maxsize else sp.max_words,
              "threads": torch.get_num_threads(), "rows": rows}
    heard = ""
    if tr is not None:
        result["asr_decoding"] = "greedy" if tr.beam is None else f"beam {tr.beam.beam}" + (
            " + word LM" if tr.word_lm is not None else "")
        heard = f"; our ASR decodes: {result['asr_decoding']}"
    if candidates > 1:
        heard += f"; each the best of {candidates} takes as our ASR hears them (its column is not independent)"
    if any(len(r["text"].split()) > sp.max_words for r in rows):
        heard += f"; texts of more than {sp.max_words} words spoken in pieces, sentence by sentence"
    elif sp.max_words == sys.maxsize:
        heard += "; every text spoken in one go"
    table = (f"TTS intelligibility on {len(rows)} held-out {unit} ({audio_s / 60:.1f} min of speech, voices: "
             f"{sp.voices}; sampled at temperature {temperature:g}, top-k {top_k}, word timing "
             f"{'greedy' if timing_temperature == 0 else f'at temperature {timing_temperature:g}'}, "
             f"{sp.tail_seconds:g} s after the end mark{heard})\n\n| speech | {unit.split()[0]} | "
             + " | ".join(judges) + " |\n|---|---|"
             + "---|" * len(judges) + f"\n| the model | {len(rows)} | "
             + " | ".join(f"{100 * scores[j]:.1f}%" for j in judges) + " |\n")
    if ref_rows:
        ref_scores = {j: round(wer([r["text"] for r in ref_rows], [r[j] for r in ref_rows]), 4) for j in judges}
        raw_scores = {j: round(wer([r["text"] for r in raw_rows], [r[j] for r in raw_rows]), 4) for j in judges}
        name = f"{reference[0]} {reference[1]} through the codec ({sp.q} codebooks)"
        result["reference"] = {"voice": list(reference), "sentences": len(ref_rows), "wer": ref_scores,
                               "rows": ref_rows}
        result["reference_without_codec"] = {"voice": list(reference), "sentences": len(raw_rows),
                                             "wer": raw_scores, "rows": raw_rows}
        for label, sc in ((f"reference: {name}", ref_scores),
                          ("the same voice without the codec", raw_scores)):
            table += f"| {label} | {len(ref_rows)} | " + " | ".join(f"{100 * sc[j]:.1f}%" for j in judges) + " |\n"
        table += (f"\nThe reference row is the voice the model imitates, speaking the same {unit.split()[0]} through the "
                  "same codec: the WER a perfect model would get from these judges. The row below it is that "
                  "voice as it comes from the engine: the difference is the codec's share.\n")
    _write(out_dir, "tts_eval", result, table)
    if shown:
        spectrograms(shown, sp.codec.sample_rate, out_dir / "tts_spectrograms.png",
                     f"{reference[0]} {reference[1]}, codec {sp.q}q" if reference else None)
    return result


def spectrograms(items: list[tuple[str, torch.Tensor, torch.Tensor | None]], sample_rate: int, path: Path,
                 reference_label: str | None = None) -> Path:
    """Log-mel spectrograms, one row per sentence: the model's speech, and beside it the
    reference (when there is one). PNG through matplotlib's Agg backend."""
    import torchaudio.transforms as T
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..fileio import atomic_write

    mel = T.MelSpectrogram(sample_rate, n_fft=1024, hop_length=160, n_mels=80)
    cols = 2 if any(r is not None for _, _, r in items) else 1
    fig = Figure(figsize=(6 * cols, 2.6 * len(items)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(items), cols, squeeze=False)
    for row, (text, wav, ref) in enumerate(items):
        for col, (x, who) in enumerate([(wav, "the model"), (ref, reference_label or "reference")][:cols]):
            ax = axes[row][col]
            if x is None:
                ax.axis("off")
                continue
            db = 10 * torch.log10(mel(x.float()[0]) + 1e-8)
            ax.imshow(db.clamp(min=db.max() - 80).numpy(), origin="lower", aspect="auto", cmap="magma",
                      extent=(0, x.shape[-1] / sample_rate, 0, db.shape[0]))
            ax.set_title(f"{who}: {text[:60]}", fontsize=8)
            ax.set_xlabel("seconds", fontsize=8)
            ax.set_ylabel("mel bin", fontsize=8)
            ax.tick_params(labelsize=7)
    return atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=110))


def evaluate_duplex(model: str, data: str | Path, out_dir: str | Path, asr_model: str | None = "asr",
                    limit: int | None = None, seed: int = 0, silence_rms: float = 0.01) -> dict:
    """Run the duplex model over held-out dialogues (``data``: a folder with ``dialogues.jsonl`` and
    the user's audio, from ``recipes/build_duplex_data.py``) through the real streaming path and
    score it.

    - **answers**: for every question the user let the model answer (no barge-in), the model's
      speech between the end of the question and the next question is transcribed by our ASR and by
      pocketsphinx, and its inner-monologue words are read; each is scored (WER) against the
      expected answer.
    - **barge-in**: for every question asked while the model was still answering, how long the
      model's speech took to stop (frame RMS below ``silence_rms`` for 3 frames in a row)."""
    from ..audio import load_audio
    from .realtime import load_engine, run_duplex
    from .tasks import Transcriber

    data = Path(data)
    rows_in = [json.loads(x) for x in (data / "dialogues.jsonl").read_text().splitlines() if x.strip()]
    rows_in = rows_in[:limit] if limit else rows_in
    if not rows_in:
        raise TokenLMError(f"{data}: no dialogues")
    eng = load_engine("duplex", model, max_sessions=1, seed=seed)
    tr = Transcriber(asr_model) if asr_model else None
    ps = Pocketsphinx()
    sr, hop, fr = eng.sample_rate, eng.hop_length, eng.frame_rate
    turns, stops, t_run, audio_s = [], [], 0.0, 0.0
    for d in tqdm(rows_in, desc="eval duplex", unit="dialogue", dynamic_ncols=True):
        wav, _ = load_audio(data / d["audio"], sr, 1)
        t0 = time.perf_counter()
        model_wav, words = run_duplex(eng, wav[0], tail_seconds=3.0)
        t_run += time.perf_counter() - t0
        audio_s += model_wav.numel() / sr
        rms = model_wav[: model_wav.numel() // hop * hop].view(-1, hop).square().mean(1).sqrt()
        end_s = model_wav.numel() / sr
        for i, turn in enumerate(d["turns"]):
            nxt = d["turns"][i + 1]["q_start"] if i + 1 < len(d["turns"]) else end_s
            if turn["interrupted"]:
                f0 = int(nxt * fr)
                quiet = (rms[f0:] < silence_rms).int()
                run3 = quiet[:-2] * quiet[1:-1] * quiet[2:] if quiet.numel() > 2 else quiet[:0]
                hit = torch.nonzero(run3).flatten()
                stops.append(round(float(hit[0]) / fr, 3) if hit.numel() else None)
                continue
            a, b = turn["q_end"], nxt
            seg = model_wav[int(a * sr): int(b * sr)]
            row = {"dialogue": d["id"], "question": turn["question"], "voice": turn["voice"],
                   "answer": turn["answer"], "said": " ".join(w.word for w in words if a <= w.start < b)}
            row["pocketsphinx"] = ps.transcribe(seg) if seg.numel() else ""
            if tr is not None:
                row["tokenlm_asr"] = " ".join(w.word for w in tr.transcribe(seg[None], sr)) if seg.numel() > hop else ""
            turns.append(row)
    judges = ["said", "tokenlm_asr", "pocketsphinx"] if tr is not None else ["said", "pocketsphinx"]
    scores = {j: round(wer([r["answer"] for r in turns], [r[j] for r in turns]), 4) for j in judges}
    # how well the judges do on the expected answers themselves, recorded in the model's voice and
    # passed through the codec (the training targets): the floor any model's speech is held to
    reference = {}
    if (data / "bank.safetensors").exists():
        from .duplex import DialogueBank

        bank = DialogueBank(data)
        refs, hyps = [], {"tokenlm_asr": [], "pocketsphinx": []}
        for codes, a in zip(bank.answer_codes, bank.header["answers"]):
            wav = torch.nn.functional.pad(eng.codec.decode(codes[None, : eng.q].to(eng.device))[0, 0].cpu(), (4000, 4000))
            refs.append(a["text"])
            hyps["pocketsphinx"].append(ps.transcribe(wav))
            if tr is not None:
                hyps["tokenlm_asr"].append(" ".join(w.word for w in tr.transcribe(wav[None], sr)))
        reference = {j: round(wer(refs, h), 4) for j, h in hyps.items() if h}
    exact = sum(r["said"] == r["answer"] for r in turns) / max(1, len(turns))
    stopped = [s for s in stops if s is not None]
    result = {"model": str(model), "data": str(data), "dialogues": len(rows_in), "answers_scored": len(turns),
              "audio_seconds": round(audio_s, 1), "run_seconds": round(t_run, 1), "wer": scores,
              "answer_accuracy": round(exact, 4), "barge_ins": len(stops),
              "stopped_within_0.5s": round(sum(s <= 0.5 for s in stopped) / max(1, len(stops)), 4),
              "median_stop_seconds": round(sorted(stopped)[len(stopped) // 2], 3) if stopped else None,
              "judges_on_reference_answers": reference,
              "voices": sorted({r["voice"] for r in turns}), "turns": turns, "stops": stops}
    names = {"said": "its own words (inner monologue)", "tokenlm_asr": "its speech, transcribed by tokenlm ASR",
             "pocketsphinx": "its speech, transcribed by pocketsphinx"}
    table = (f"Full-duplex answers on {len(rows_in)} held-out dialogues ({len(turns)} answers, voices never heard "
             f"in training)\n\n| what is scored | WER vs expected answers |\n|---|---|\n"
             + "".join(f"| {names[j]} | {100 * scores[j]:.1f}% |\n" for j in judges)
             + "".join(f"| reference: the expected answers in the model's voice through the codec, {j} | "
                       f"{100 * v:.1f}% |\n" for j, v in reference.items())
             + f"\nExact answers (inner monologue): {100 * exact:.1f}%. Barge-ins: {len(stops)}; the model stopped "
             f"talking within 0.5 s in {100 * result['stopped_within_0.5s']:.1f}% "
             f"(median {result['median_stop_seconds']} s).\n")
    _write(Path(out_dir), "duplex_eval", result, table)
    return result
