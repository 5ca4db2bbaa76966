"""Turn a speech manifest into token shards (codec codes + aligned text) for LM training.

One process:
    python recipes/pretokenize.py --manifest data/corpus/train.jsonl --tokenizer runs/tokenizer.model \\
        --out data/tokens/train
Several processes (each takes every N-th shard), on CPUs or GPUs:
    accelerate launch --num_processes 2 --cpu recipes/pretokenize.py ...
Resumable: shards already written are skipped, so rerunning after an interruption finishes the job.
With another tokenizer (e.g. a phone lexicon for TTS) and codes already made, skip the codec:
    python recipes/pretokenize.py --manifest M --tokenizer runs/phones.model --from-shards data/tokens/train \
        --out data/tokens_phones/train
Codec-resynthesized copies (the codes of --from-shards decoded by a decoder, e.g. a TTS's own, and
encoded again by --codec: an ASR that reads decoded speech as well as recorded speech):
    python recipes/pretokenize.py --manifest M --tokenizer T --from-shards data/tokens/train \
        --resynth tokenlm/lm/pretrained/tts/codec --out data/tokens_rt/train
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--tokenizer", type=Path, required=True, help="sentencepiece model or phone lexicon "
                   "(train_tokenizer.py)")
    p.add_argument("--codec", default="default", help="codec name or path (tokenlm.codecs.load)")
    p.add_argument("--codebooks", type=int, default=None, help="keep only the first N codebooks")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--from-shards", type=Path, nargs="+", metavar="DIR", help="take the codes from these shard "
                   "folders (made from the same audio with the same codec) instead of encoding the audio again")
    p.add_argument("--resynth", metavar="CODEC", help="with --from-shards: decode their codes with this codec "
                   "(name or path; same codes) and encode the audio again with --codec")
    p.add_argument("--shard-size", type=int, default=256, help="utterances per shard")
    p.add_argument("--threads", type=int, default=0, help="torch threads per process (0: leave as is)")
    args = p.parse_args(argv)
    if args.resynth and not args.from_shards:
        p.error("--resynth needs --from-shards")

    import torch
    from accelerate import PartialState
    from tqdm import tqdm

    import tokenlm.codecs as tc
    from tokenlm.data.manifest import read_manifest
    from tokenlm.errors import TokenLMError
    from tokenlm.fileio import atomic_write
    from tokenlm.lm.data import TokenShards, tokenize_entries, write_shard
    from tokenlm.lm.tokenizer import load_tokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    state = PartialState(cpu=not torch.cuda.is_available())
    entries = read_manifest(args.manifest)
    if not entries:
        raise TokenLMError(f"{args.manifest}: no utterances")
    tokenizer = load_tokenizer(args.tokenizer)
    codes_of = None
    if args.from_shards:
        src = TokenShards(args.from_shards)
        codes_of = dict(zip(src.ids, src.codes))
        if not args.resynth:
            args.codec = src.info.get("codec_name", args.codec)
    codec = tc.load(args.codec).to(state.device).eval()
    decoder = None
    if args.resynth:
        decoder = tc.load(args.resynth).to(state.device).eval()
        if src.meta["codec"] != decoder.token_fingerprint:
            raise TokenLMError(f"{args.from_shards[0]}: its codes come from another codec than {args.resynth}")
    elif codes_of is not None and src.meta["codec"] != codec.token_fingerprint:
        raise TokenLMError(f"{args.from_shards[0]}: its codes come from another codec than {args.codec}")
    if decoder is None and codes_of is not None and args.codebooks and args.codebooks != src.meta["num_codebooks"]:
        codes_of = {k: v[: args.codebooks] for k, v in codes_of.items()}
    q = args.codebooks or (src.meta["num_codebooks"] if codes_of is not None and decoder is None
                           else codec.num_codebooks)
    if not 1 <= q <= codec.num_codebooks:
        raise TokenLMError(f"--codebooks must be in 1..{codec.num_codebooks}, got {q}")
    meta = {"codec": codec.token_fingerprint, "codec_name": str(args.codec), "tokenizer": tokenizer.digest,
            "frame_rate": codec.frame_rate, "sample_rate": codec.sample_rate, "num_codebooks": q,
            "codebook_size": codec.codebook_size, "text_card": tokenizer.vocab_size}
    args.out.mkdir(parents=True, exist_ok=True)
    chunks = [entries[i: i + args.shard_size] for i in range(0, len(entries), args.shard_size)]
    mine = [i for i in range(len(chunks)) if i % state.num_processes == state.process_index]
    todo = [i for i in mine if not (args.out / f"shard-{i:05d}.safetensors").exists()]
    bar = tqdm(total=sum(len(chunks[i]) for i in mine), initial=sum(len(chunks[i]) for i in mine if i not in todo),
               desc="pretokenize", unit="utt", disable=not state.is_main_process, dynamic_ncols=True)
    dropped = 0
    for i in todo:
        made = codes_of
        if decoder is not None:
            made = {e["id"]: _resynth(codes_of, e["id"], decoder, codec, q, state.device) for e in chunks[i]}
        shard = tokenize_entries(chunks[i], _Limited(codec, q), tokenizer, state.device, made)
        write_shard(args.out / f"shard-{i:05d}.safetensors", shard, meta)
        dropped += shard["dropped_words"]
        bar.update(len(chunks[i]))
    bar.close()
    state.wait_for_everyone()
    if state.is_main_process:
        index = {**meta, "manifest": str(args.manifest), "utterances": len(entries), "shards": len(chunks)}
        atomic_write(args.out / "index.json", lambda tmp: Path(tmp).write_text(json.dumps(index, indent=2) + "\n"))
        print(f"{args.out}: {len(chunks)} shards, {len(entries)} utterances"
              + (f"; {dropped} words did not fit their utterance" if dropped else ""), file=sys.stderr)
    return 0


def _resynth(codes_of, utt_id, decoder, codec, q, device):
    """``utt_id``'s codes decoded by ``decoder`` and encoded again by ``codec`` (first ``q`` codebooks)."""
    import torch

    from tokenlm.errors import TokenLMError

    if utt_id not in codes_of:
        raise TokenLMError(f"utterance {utt_id!r} is not in the shards its codes should come from")
    codes = codes_of[utt_id]
    with torch.inference_mode():
        wav = decoder.decode(codes[None].to(device))
        new = codec.encode(wav, num_codebooks=q)[0].cpu()
    return new[:, : codes.shape[1]]


class _Limited:
    """A codec view that encodes with its first ``q`` codebooks."""

    def __init__(self, codec, q):
        self.codec, self.q = codec, q

    def __getattr__(self, name):
        return getattr(self.codec, name)

    def encode(self, wav):
        return self.codec.encode(wav, num_codebooks=self.q)


if __name__ == "__main__":
    from tokenlm.errors import TokenLMError

    try:
        sys.exit(main())
    except TokenLMError as e:
        print(f"pretokenize: error: {e}", file=sys.stderr)
        sys.exit(1)
