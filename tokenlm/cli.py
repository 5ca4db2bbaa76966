"""The ``tokenlm`` command line: audio to token files and back, and a look inside files.

    tokenlm encode speech.wav -o speech.tok [--codec NAME|PATH] [--weights PATH] [--codebooks N]
    tokenlm decode speech.tok -o speech.wav [--codec NAME|PATH] [--weights PATH]
    tokenlm info FILE [--json]        # a .tok file, an audio file or a codec checkpoint
    tokenlm eval-codec --manifest test.jsonl | --audio FILE_OR_DIR ... [--codec NAME|PATH] [--out-dir DIR]
    tokenlm transcribe speech.wav [--stream] [--json] [--model asr|PATH] [--beam N] [--lm ARPA|none]
                       [--max-seconds S]
    tokenlm speak "Some text." -o speech.wav [--model tts|PATH] [--seed N] [--temperature T] [--candidates N]
                  [--timing-temperature T] [--tail-seconds S]
    tokenlm serve [--host 127.0.0.1] [--port 8998] [--max-sessions 8] [--asr M] [--duplex M] [--tts M]
                  [--asr-beam N] [--asr-max-seconds S]

A problem with the input prints one line, ``tokenlm: error: ...``, on stderr and exits 1;
usage errors exit 2, Ctrl-C exits 130. An unexpected failure prints one line too; set
``TOKENLM_DEBUG=1`` to see its traceback. Outputs are written to a temporary file and
renamed, so a failed run never leaves a partial file nor clobbers an existing one.

torch and the codecs are imported inside the commands, so ``tokenlm --help`` is quick.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from contextlib import nullcontext
from pathlib import Path

from tokenlm.errors import AudioError, CheckpointError, CodecError, TokenFileError, TokenLMError

CHUNK_SECONDS = 10.0  # streaming chunk for long inputs (rounded to whole frames)
TOKEN_SUFFIX = ".tok"


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("tokenlm")
    except Exception:
        return "unknown"


# ---- helpers ------------------------------------------------------------------------------


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _showwarning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line on stderr: ``tokenlm: warning: ...``."""
    text = _one_line(message)
    if category.__name__ not in ("UserWarning", "UntrainedCodecWarning", "InterimModelWarning"):
        text = f"{text} ({category.__name__})"
    print(f"tokenlm: warning: {text}", file=sys.stderr if file is None else file)


def _known_codec_names() -> tuple[str, ...]:
    from tokenlm.codecs.checkpoint import ENCODEC_NAMES, bundled_codecs
    from tokenlm.codecs.rvq_codec import PRESETS

    return tuple(dict.fromkeys(("default", *bundled_codecs(), *PRESETS, *ENCODEC_NAMES)))


def _codec_source(arg: str) -> str:
    """What to record in a token file so that ``decode`` can load the same codec anywhere."""
    if arg in _known_codec_names() or not Path(arg).exists():
        return arg
    return str(Path(arg).resolve())


def _load_codec(source: str, weights: str | None, check=None):
    """Load a codec; its warnings are printed only if ``check(codec)`` passes.

    A command that is about to fail because of the codec (wrong codec for a token file,
    too many codebooks asked) then prints just its error line.
    """
    from tokenlm.codecs import load

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        codec = load(source, weights=weights)
        if check is not None:
            check(codec)
    seen = set()
    for w in caught:
        key = (w.category, str(w.message))
        if key not in seen:
            seen.add(key)
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return codec.eval()


def _load_codec_recorded(source: str, weights: str | None, tokens):
    """The codec a token file names; when that is a bundled name that has moved on (a newer
    default), the bundled codec that wrote its codes."""
    try:
        return _load_codec(source, weights, tokens.check_codec)
    except TokenFileError:
        from tokenlm.codecs import bundled_for_tokens

        other = None
        if source in _known_codec_names() and not Path(source).exists():
            other = bundled_for_tokens(tokens.meta.get("codec_token_fingerprint"))
        if other is None or other == source:
            raise
        return _load_codec(other, weights, tokens.check_codec)


def _progress(total_seconds: float, desc: str):
    from tqdm import tqdm

    return tqdm(
        total=total_seconds, desc=desc, unit="s", disable=None, file=sys.stderr, leave=False,
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}]",
    )


def _chunk_frames(codec) -> int:
    return max(1, round(CHUNK_SECONDS * codec.frame_rate))


def encode_audio(codec, wav, num_codebooks: int | None = None, show_progress: bool = True):
    """``wav [C, T]`` -> codes ``[Q, F]``; long audio goes through the codec in streaming chunks."""
    import torch.nn.functional as F

    hop, total = codec.hop_length, wav.shape[-1]
    chunk = _chunk_frames(codec) * hop
    x = wav[None]
    if not getattr(codec, "supports_streaming", False) or total <= chunk:
        return codec.encode(x, num_codebooks)[0]
    import torch

    x = F.pad(x, (0, codec.num_frames(total) * hop - total))  # whole frames; zeros like offline
    parts = []
    bar = _progress(total / codec.sample_rate, "encoding") if show_progress else nullcontext()
    with bar, codec.streaming(1):
        for start in range(0, x.shape[-1], chunk):
            parts.append(codec.encode(x[..., start : start + chunk], num_codebooks))
            if show_progress:
                bar.update((min(start + chunk, total) - min(start, total)) / codec.sample_rate)
    return torch.cat(parts, dim=-1)[0]


def decode_tokens(codec, tokens, show_progress: bool = True):
    """A checked :class:`~tokenlm.codecs.tokenfile.TokenFile` -> ``wav [C, num_samples]`` (CPU)."""
    tokens.check_codec(codec)
    n = _chunk_frames(codec)
    if not getattr(codec, "supports_streaming", False) or tokens.num_frames <= n:
        return tokens.decode(codec)
    import torch

    p = next(codec.parameters(), None)
    codes = tokens.codes[None]
    if p is not None:
        codes = codes.to(p.device)
    parts = []
    sr, hop, total = codec.sample_rate, codec.hop_length, tokens.num_samples
    bar = _progress(total / sr, "decoding") if show_progress else nullcontext()
    with bar, codec.streaming(1):
        for start in range(0, tokens.num_frames, n):
            parts.append(codec.decode(codes[..., start : start + n]).cpu())
            if show_progress:
                bar.update((min((start + n) * hop, total) - min(start * hop, total)) / sr)
    return torch.cat(parts, dim=-1)[0, :, :total].float()


# ---- commands -----------------------------------------------------------------------------


def cmd_encode(args) -> int:
    from tokenlm.audio import convert_channels, load_audio, resample
    from tokenlm.codecs.tokenfile import save_tokens

    out = Path(args.output)
    if out.suffix.lower() != TOKEN_SUFFIX:
        raise TokenFileError(f"{out}: token files must end in '{TOKEN_SUFFIX}' (got '{out.suffix}')")
    wav, sr = load_audio(args.input)  # problems with the input show before the model loads

    def check(codec):
        n = args.codebooks
        if n is not None and not 1 <= n <= codec.num_codebooks:
            raise CodecError(f"--codebooks must be 1..{codec.num_codebooks} for this codec, got {n}")

    codec = _load_codec(args.codec, args.weights, check)
    wav = resample(convert_channels(wav, codec.channels), sr, codec.sample_rate)
    codes = encode_audio(codec, wav, args.codebooks)
    weights = str(Path(args.weights).resolve()) if args.weights else None
    save_tokens(out, codes, codec, wav.shape[-1], codec_source=_codec_source(args.codec), codec_weights=weights)
    q, f = codes.shape
    kbps = codec.frame_rate * q * _bits(codec.codebook_size) / 1000
    print(f"wrote {out}: {f} frames x {q} codebooks, {kbps:.2f} kbps, {wav.shape[-1] / codec.sample_rate:.2f} s "
          f"of audio", file=sys.stderr)
    return 0


def _bits(codebook_size: int) -> int:
    from tokenlm.codecs.tokenfile import bits_per_code

    return bits_per_code(codebook_size)


def cmd_decode(args) -> int:
    from tokenlm.audio import WRITE_FORMATS, save_audio
    from tokenlm.codecs.tokenfile import load_tokens

    out = Path(args.output)
    if out.suffix.lower() not in WRITE_FORMATS:
        raise AudioError(f"{out}: cannot write '{out.suffix}' files; use one of {', '.join(WRITE_FORMATS)}")
    tokens = load_tokens(args.input)
    source, weights = args.codec, args.weights
    if source is None:
        meta = tokens.meta
        source = meta.get("codec_source")
        if source is None and meta.get("codec") in _known_codec_names():
            source = meta["codec"]
        if source is None:
            raise TokenFileError(
                f"{args.input}: does not record how to load codec '{meta.get('codec')}' "
                f"(fingerprint {meta.get('codec_fingerprint')}); pass --codec"
            )
        weights = weights or meta.get("codec_weights")
        try:
            codec = _load_codec_recorded(source, weights, tokens)
        except CheckpointError as e:
            raise CheckpointError(f"{e} (codec recorded in {args.input}; pass --codec)") from None
    else:
        codec = _load_codec(source, weights, tokens.check_codec)
    wav = decode_tokens(codec, tokens)
    save_audio(out, wav, codec.sample_rate)
    print(f"wrote {out}: {wav.shape[-1] / codec.sample_rate:.2f} s, {codec.sample_rate} Hz, "
          f"{wav.shape[0]} channel(s)", file=sys.stderr)
    return 0


def cmd_info(args) -> int:
    info = inspect_file(args.file)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        _print_human(info)
    return 0


def inspect_file(target: str) -> dict:
    """What ``tokenlm info`` reports about a token file, audio file, codec checkpoint or codec name."""
    path = Path(target)
    if not path.exists():
        if target in _known_codec_names():
            return _codec_info(target, None)
        raise TokenLMError(f"{path}: no such file or directory")
    if path.is_dir():
        if (path / "model.safetensors").exists():
            return _codec_info(str(path), path)
        raise TokenLMError(f"{path}: is a directory, not a token file, audio file or codec checkpoint")
    if path.suffix.lower() == TOKEN_SUFFIX:
        return _token_info(path)
    fmt = _safetensors_format(path)
    if fmt == "tokenlm-tokens":
        return _token_info(path)
    if fmt == "tokenlm-codec":
        return _codec_info(str(path), path)
    if fmt is not None:
        raise TokenLMError(f"{path}: a safetensors file, but neither a tokenlm token file nor a codec checkpoint")
    from tokenlm.audio import audio_info

    try:
        return {"kind": "audio", **audio_info(path)}
    except AudioError:
        size = path.stat().st_size
        what = "an empty file" if size == 0 else "not a token file, audio file or codec checkpoint"
        raise TokenLMError(f"{path}: {what}") from None


def _safetensors_format(path: Path) -> str | None:
    """The 'format' in a safetensors file's tokenlm metadata, '' if it has none, None if not safetensors."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="np") as f:
            meta = f.metadata() or {}
    except Exception:
        return None
    try:
        return str(json.loads(meta.get("tokenlm", "{}")).get("format", ""))
    except (json.JSONDecodeError, AttributeError):
        return ""


def _token_info(path: Path) -> dict:
    from tokenlm.codecs.tokenfile import load_tokens

    return {"kind": "tokens", **load_tokens(path).info()}


def _codec_info(source: str, path: Path | None) -> dict:
    codec = _load_codec(source, None)
    return {
        "kind": "codec",
        "path": str(path) if path is not None else None,
        **codec.describe(),
        "trained": bool(getattr(codec, "trained", True)),
        "parameters": sum(p.numel() for p in codec.parameters()),
        "config": codec.config_dict,
    }


def _print_human(d: dict, indent: int = 0) -> None:
    pad = "  " * indent
    for key, value in d.items():
        if isinstance(value, dict):
            print(f"{pad}{key}:")
            _print_human(value, indent + 1)
        else:
            print(f"{pad}{key}: {_fmt(value)}")


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{round(value, 4)}"
    if isinstance(value, list | tuple):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def cmd_eval_codec(args) -> int:
    """Codec quality (STOI, PESQ-WB, SI-SDR, log-mel) at each codebook count vs Codec 2 and Opus."""
    from tokenlm import evaluation

    if args.manifest is not None:  # problems with the inputs show before the model loads
        evaluation.read_manifest(args.manifest, args.limit)
    else:
        evaluation.find_audio(args.audio, args.limit)

    def check(codec):
        bad = [n for n in args.codebooks or () if not 1 <= n <= codec.num_codebooks]
        if bad:
            raise CodecError(f"--codebooks must be 1..{codec.num_codebooks} for this codec, got {bad[0]}")

    codec = _load_codec(args.codec, args.weights, check)
    return evaluation.run(args, codec=codec)


# ---- entry point --------------------------------------------------------------------------


def cmd_transcribe(args) -> int:
    from tokenlm.audio import load_audio
    from tokenlm.lm.tasks import Transcriber

    word_lm = None if args.lm is None else False if args.lm.lower() == "none" else args.lm
    if args.max_seconds is not None and not args.max_seconds >= 0:
        raise TokenLMError(f"--max-seconds must be >= 0, got {args.max_seconds}")
    tr = Transcriber(args.model, quantize="int8" if args.int8 else None, beam=args.beam, word_lm=word_lm)
    if args.max_seconds is not None:
        tr.max_seconds = args.max_seconds if args.max_seconds > 0 else float("inf")
    wav, _ = load_audio(args.input, tr.codec.sample_rate, tr.codec.channels)
    duration = wav.shape[-1] / tr.codec.sample_rate
    if args.stream:
        session = tr.session(beam=bool(args.beam))  # greedy unless a beam is asked for
        step = max(1, round(args.chunk_ms / 1000 * tr.codec.sample_rate))
        words = []
        for start in range(0, wav.shape[-1] + 1, step):
            chunk = wav[:, start: start + step]
            new = session.push(chunk) if chunk.shape[-1] else []
            if start + step >= wav.shape[-1]:
                new += session.finish()
            for w in new:
                print(json.dumps(w.to_dict()) if args.json else f"{w.start:7.2f} {w.end:7.2f}  {w.word}", flush=True)
            words += new
            if start + step >= wav.shape[-1]:
                break
        return 0
    words = tr.transcribe(wav)
    text = " ".join(w.word for w in words)
    if args.json:
        print(json.dumps({"text": text, "duration": round(duration, 3), "words": [w.to_dict() for w in words]},
                         indent=2))
    else:
        print(text)
    return 0


def cmd_speak(args) -> int:
    from tokenlm.audio import WRITE_FORMATS, save_audio
    from tokenlm.lm.tasks import Speaker

    out = Path(args.output)
    if out.suffix.lower() not in WRITE_FORMATS:
        raise AudioError(f"{out}: cannot write '{out.suffix}' files; use one of {', '.join(WRITE_FORMATS)}")
    if args.candidates < 1:
        raise TokenLMError(f"--candidates must be >= 1, got {args.candidates}")
    if min(args.temperature, args.timing_temperature, args.top_k, args.tail_seconds) < 0:
        raise TokenLMError("--temperature, --timing-temperature, --top-k and --tail-seconds must be >= 0")
    text = args.text
    if text == "-":
        text = sys.stdin.read()
    sp = Speaker(args.model, quantize="int8" if args.int8 else None, tail_seconds=args.tail_seconds)
    wav = sp.speak(text, temperature=args.temperature, top_k=args.top_k, timing_temperature=args.timing_temperature,
                   seed=args.seed, candidates=args.candidates)
    sr = sp.codec.sample_rate
    save_audio(out, wav, sr)
    print(f"wrote {out}: {wav.shape[-1] / sr:.2f} s at {sr} Hz (voices: {sp.voices})", file=sys.stderr)
    return 0


def cmd_duplex(args) -> int:
    import torch

    from tokenlm.audio import WRITE_FORMATS, load_audio, save_audio
    from tokenlm.lm.generate import Sampling
    from tokenlm.lm.realtime import load_engine, run_duplex

    out = Path(args.output)
    if out.suffix.lower() not in WRITE_FORMATS:
        raise AudioError(f"{out}: cannot write '{out.suffix}' files; use one of {', '.join(WRITE_FORMATS)}")
    eng = load_engine("duplex", args.model, max_sessions=1, seed=args.seed,
                      quantize="int8" if args.int8 else None)
    if args.temperature is not None:
        eng.streamer.sampling = [s if eng.streams[i].kind == "text" else Sampling(args.temperature, args.top_k)
                                 for s, i in zip(eng.streamer.sampling, eng.streams.generated)]
    sr = eng.sample_rate
    wav, _ = load_audio(args.input, sr, 1)
    model, words = run_duplex(eng, wav[0], tail_seconds=args.tail, progress=sys.stderr.isatty())
    user = torch.nn.functional.pad(wav[0], (0, model.numel() - wav.shape[-1]))
    save_audio(out, torch.stack([user, model]), sr)
    timeline = {"input": str(args.input), "output": str(out), "duration": round(model.numel() / sr, 3),
                "channels": ["user", "model"], "words": [w.to_dict() for w in words],
                "text": " ".join(w.word for w in words)}
    if args.json:
        print(json.dumps(timeline, indent=2))
    else:
        for w in words:
            print(f"{w.start:7.2f} {w.end:7.2f}  {w.word}")
    print(f"wrote {out}: stereo (left: user, right: model), {model.numel() / sr:.2f} s at {sr} Hz", file=sys.stderr)
    return 0


def cmd_serve(args) -> int:
    from tokenlm.server.app import serve_command

    return serve_command(args)


def _whole_number(minimum: int, what: str):
    """An argparse type: an integer >= ``minimum`` (``what`` names it in the error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value

    return parse


nonneg_int = _whole_number(0, "a whole number >= 0")
positive_int = _whole_number(1, "a positive integer")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tokenlm",
        description="Neural audio codec tokens: encode audio to token files, decode them, inspect files.",
    )
    parser.add_argument("--version", action="version", version=f"tokenlm {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    codec_help = ("codec: 'default', a preset ('speech16k', 'tiny'), 'encodec_24khz'/'encodec_48khz', "
                  "or a checkpoint folder/.safetensors")
    p = sub.add_parser("encode", help="encode an audio file to a token file (.tok)",
                       description="Encode an audio file (wav, flac, ogg, ...) to a token file.")
    p.add_argument("input", metavar="IN", help="audio file; resampled and mixed to what the codec takes")
    p.add_argument("-o", "--output", metavar="OUT.tok", required=True, help="token file to write")
    p.add_argument("--codec", default="default", help=codec_help + " (default: %(default)s)")
    p.add_argument("--weights", metavar="PATH", help="pretrained weights for EnCodec codecs")
    p.add_argument("--codebooks", type=positive_int, metavar="N",
                   help="encode with the first N codebooks only (lower bitrate; default: all)")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("decode", help="decode a token file to audio",
                       description="Decode a token file to audio (wav, flac or ogg, by extension).")
    p.add_argument("input", metavar="IN.tok", help="token file written by `tokenlm encode`")
    p.add_argument("-o", "--output", metavar="OUT.wav", required=True, help="audio file to write")
    p.add_argument("--codec", default=None, help=codec_help + " (default: the one recorded in the token file)")
    p.add_argument("--weights", metavar="PATH", help="pretrained weights for EnCodec codecs")
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("info", help="describe a token file, audio file or codec checkpoint",
                       description="Describe a token file, an audio file, or a codec (checkpoint or name).")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("transcribe", help="speech to text with the bundled (or a trained) ASR model",
                       description="Transcribe an audio file. Prints the text; --json gives words with "
                                   "start/end times; --stream prints each word as soon as it is recognized.")
    p.add_argument("input", metavar="IN", help="audio file (any rate; resampled)")
    p.add_argument("--model", default="asr", help="LM checkpoint folder or bundled name (default: %(default)s)")
    p.add_argument("--stream", action="store_true", help="streaming recognition: words as they are final")
    p.add_argument("--chunk-ms", type=positive_int, default=80, help="--stream: audio pushed per call (ms)")
    p.add_argument("--json", action="store_true", help="JSON output (with --stream: one JSON object per word)")
    p.add_argument("--int8", action="store_true", help="int8 weights for the LM: faster on a CPU, "
                   "slightly different output (see README)")
    p.add_argument("--beam", type=nonneg_int, default=None, metavar="N",
                   help="beam width of the search with the word language model (0: greedy; default: 8 when "
                        "the model has a language model, else greedy; with --stream: greedy unless given)")
    p.add_argument("--lm", metavar="ARPA", help="word language model for the beam search (an ARPA file, e.g. "
                   "from recipes/train_word_lm.py or KenLM; 'none': lexicon only); default: the model's own")
    p.add_argument("--max-seconds", type=float, default=None, metavar="S",
                   help="a longer recording is transcribed in pieces of at most S seconds cut at pauses (with "
                        "--stream: a fresh LM context at a pause once one holds 3 s, at any dip past S); "
                        "0: in one go (default: 10, the model's training crop)")
    p.set_defaults(func=cmd_transcribe)

    p = sub.add_parser("speak", help="text to speech with the bundled (or a trained) TTS model",
                       description="Synthesize speech for TEXT ('-' reads standard input).")
    p.add_argument("text", metavar="TEXT")
    p.add_argument("-o", "--output", metavar="OUT.wav", required=True)
    p.add_argument("--model", default="tts", help="LM checkpoint folder or bundled name (default: %(default)s)")
    # the defaults are tokenlm.lm.tasks.TTS_* (not imported here: torch would load with every command)
    p.add_argument("--temperature", type=float, default=0.5,
                   help="sampling temperature of the speech codes (default: %(default)s)")
    p.add_argument("--top-k", type=int, default=50, help="sample among the k likeliest codes (default: %(default)s)")
    p.add_argument("--timing-temperature", type=float, default=0.0, metavar="T",
                   help="sampling temperature of where each word starts (default: %(default)s, greedy)")
    p.add_argument("--tail-seconds", type=float, default=0.12, metavar="S",
                   help="how long the speech goes on after the last word ends: its release and some silence "
                        "(default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--candidates", type=int, default=1, metavar="N",
                   help="sample N takes (one batch) and keep the one the bundled ASR hears closest to the text: "
                        "fewer garbled words, about N times the work (default: %(default)s)")
    p.add_argument("--int8", action="store_true", help="int8 weights for the LM: faster on a CPU, "
                   "slightly different output (see README)")
    p.set_defaults(func=cmd_speak)

    from tokenlm.evaluation import add_arguments

    p = sub.add_parser("duplex", help="run the full-duplex model over a recording: stereo out (user, model)",
                       description="Feeds IN to the full-duplex model frame by frame (40 ms), as if the user "
                       "were speaking live, and writes a stereo file: the user on the left, the model's answers on "
                       "the right. Prints the model's words with their times (--json: the whole timeline).")
    p.add_argument("input", help="audio file (any rate; mixed to mono)")
    p.add_argument("-o", "--output", required=True, help="stereo output file (.wav/.flac)")
    p.add_argument("--model", default="duplex", help="duplex LM: bundled name or folder (default: duplex)")
    p.add_argument("--json", action="store_true", help="print the timeline as JSON")
    p.add_argument("--tail", type=float, default=2.0, help="seconds of silence after the input (default 2)")
    p.add_argument("--temperature", type=float, default=None, help="sampling temperature of the model's speech")
    p.add_argument("--top-k", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--int8", action="store_true", help="int8 weights for the LM: faster on a CPU, "
                   "slightly different output (see README)")
    p.set_defaults(func=cmd_duplex)

    p = sub.add_parser("eval-codec", help="measure codec quality against Codec 2 and Opus",
                       description="Score tokenlm's codec at each codebook count, and Codec 2 (3200, 1300, 700C) "
                                   "and Opus (6 kbps), on held-out speech: STOI, PESQ-WB, SI-SDR, log-mel "
                                   "distance and bitrate. Writes codec_eval.md, .json and .png to --out-dir.")
    add_arguments(p)
    p.set_defaults(func=cmd_eval_codec)

    p = sub.add_parser("serve", help="the live demo: a browser page and a websocket server (ASR, TTS, duplex)",
                       description="Serve the browser page at / and the streaming websocket protocol at /ws "
                                   "(docs/server.md). Every mode with a model runs; the live sessions of a mode "
                                   "are stepped together in one batch. Ctrl-C stops it.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    p.add_argument("--port", type=int, default=8998, help="port (default: %(default)s; 0: any free port)")
    p.add_argument("--max-sessions", type=positive_int, default=8, metavar="N",
                   help="sessions per mode (default: %(default)s)")
    for mode in ("asr", "duplex", "tts"):
        p.add_argument(f"--{mode}", metavar="MODEL", default=None,
                       help=f"{mode} LM folder or bundled name (default: the bundled '{mode}' model if there "
                            "is one); 'none' switches the mode off")
    p.add_argument("--threads", type=positive_int, default=1, metavar="N",
                   help="torch CPU threads (default 1: with 2, a 2-core machine misses real time even for one "
                   "duplex session, since each step waits for a thread the server's own work has delayed)")
    p.add_argument("--device", default="cpu", help="torch device for the models (default: %(default)s)")
    p.add_argument("--int8", action="store_true", help="int8 weights for the LMs: faster steps on a CPU when few "
                   "sessions are live (see README)")
    p.add_argument("--compile", action="store_true", help="torch.compile the LM steps: for GPUs (compiling "
                   "takes tens of seconds at start-up)")
    p.add_argument("--asr-beam", type=nonneg_int, default=0, metavar="N",
                   help="live ASR with a beam search of width N (its lexicon and word language model): better "
                   "words, later, N LM rows per session (default 0: greedy)")
    p.add_argument("--asr-max-seconds", type=float, default=None, metavar="S",
                   help="live ASR: a fresh LM context at a pause once one holds 3 s, at any dip past S seconds "
                        "(default 10; 0: one context per session, its window sliding)")
    p.set_defaults(func=cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, usage errors (2)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    debug = os.environ.get("TOKENLM_DEBUG", "") not in ("", "0")
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _showwarning
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("tokenlm: interrupted", file=sys.stderr)
        return 130
    except TokenLMError as e:
        if debug:
            raise
        print(f"tokenlm: error: {_one_line(e)}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # e.g. `tokenlm info x.tok | head -1`
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except Exception:
            pass
        return 1
    except OSError as e:  # permission denied, disk full, ... while reading or writing
        if debug:
            raise
        where = f"{e.filename}: " if e.filename else ""
        print(f"tokenlm: error: {where}{_one_line(e.strerror or e)}", file=sys.stderr)
        return 1
    except Exception as e:
        if debug:
            raise
        print(f"tokenlm: internal error: {type(e).__name__}: {_one_line(e)} "
              "(set TOKENLM_DEBUG=1 for a traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
