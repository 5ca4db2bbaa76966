"""Export a trained LM for shipping: float16 weights (half the size), loadable as usual (back in float32).

    python recipes/export_lm.py runs/asr/model tokenlm/lm/pretrained/asr [--note "interim, 5,500 CPU steps"]

A TTS can ship its own codec (--codec: the codec it was trained on with the decoder fine-tuned on
its voice, `train_codec.py --decoder-only`): it goes to DEST/codec (float16 unless that would change
its codes) and is what the model then decodes with; its codes must be the model's (same token
fingerprint).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="LM checkpoint folder or bundled name")
    p.add_argument("dest", type=Path, help="folder to write")
    p.add_argument("--float32", action="store_true", help="keep float32 weights")
    p.add_argument("--note", default=None, help="a line stored in the checkpoint (e.g. how it was trained)")
    p.add_argument("--voices", default=None, help="the voice(s) a TTS speaks in, when training did not record "
                   "them (--voices); shown by 'tokenlm speak' and used for eval_tts.py's reference row")
    p.add_argument("--word-lm", type=Path, default=None, metavar="ARPA",
                   help="an ASR's word language model to ship beside it (words.arpa.gz; default: the source's, if any)")
    p.add_argument("--codec", default=None, metavar="FOLDER",
                   help="a codec with the model's codes to ship as its own (DEST/codec; default: the source's, if any)")
    p.add_argument("--interim", action="store_true",
                   help="mark the model as interim: loading it warns with --note (e.g. its measured error rate)")
    args = p.parse_args(argv)
    import torch

    from tokenlm.lm.checkpoint import load_lm, save_lm

    lm = load_lm(args.source)
    keep = {k: v for k, v in lm.header.items()
            if k not in ("format", "version", "task", "config", "codec", "tokenizer", "trained")}
    if args.note:
        keep["note"] = args.note
    if args.interim:
        keep["interim"] = True
    if args.voices:
        keep["voices"] = args.voices
    own, codec, want = args.codec or lm.codec_path, None, lm.codec_info.get("fingerprint")
    if own is not None:  # checked before anything is written
        import tokenlm.codecs as tc
        from tokenlm.errors import CodecError
        from tokenlm.lm.checkpoint import VOICE_CODEC

        codec = tc.load(own)
        if want and codec.token_fingerprint != want:
            raise CodecError(f"{own}: its codes (token fingerprint {codec.token_fingerprint}) are not the model's "
                             f"({want}); a voice codec must be fine-tuned with train_codec.py --decoder-only")
    save_lm(lm.model, args.dest, lm.tokenizer, task=lm.task, codec=lm.codec_info, trained=lm.header.get("trained", True),
            dtype=None if args.float32 else torch.float16, extra=keep)
    word_lm = args.word_lm or lm.word_lm_path
    if word_lm is not None:
        import gzip
        import shutil

        from tokenlm.lm.checkpoint import WORD_LM
        from tokenlm.lm.wordlm import NGramLM

        NGramLM.load(word_lm)  # a clear error now rather than at the first transcription
        dest = args.dest / WORD_LM
        if Path(word_lm).resolve() != dest.resolve():
            if Path(word_lm).read_bytes()[:2] == b"\x1f\x8b":
                shutil.copyfile(word_lm, dest)
            else:
                with open(dest, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as f:
                    f.write(Path(word_lm).read_bytes())
    if codec is not None:
        tc.save_codec(codec, args.dest / VOICE_CODEC, inference_only=True, dtype=None if args.float32 else torch.float16)
        if want and tc.load(args.dest / VOICE_CODEC).token_fingerprint != want:  # float16 moved its codes
            print(f"export_lm: {own}: kept in float32 (its float16 weights give other codes)", file=sys.stderr)
            tc.save_codec(codec, args.dest / VOICE_CODEC, inference_only=True)
    size = sum(f.stat().st_size for f in args.dest.rglob("*") if f.is_file()) / 1e6
    print(f"wrote {args.dest} ({size:.1f} MB, {lm.task}, {lm.model.num_parameters() / 1e6:.2f} M parameters)",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    from tokenlm.errors import TokenLMError

    try:
        sys.exit(main())
    except TokenLMError as e:
        print(f"export_lm: error: {e}", file=sys.stderr)
        sys.exit(1)
