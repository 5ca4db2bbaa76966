"""Train a token LM (ASR or TTS layout) on token shards made by recipes/pretokenize.py.

One CPU process:
    python recipes/train_lm.py --task asr --train data/tokens/train --valid data/tokens/valid \\
        --tokenizer runs/tokenizer.model --out runs/asr
Several CPU processes (gloo), or GPUs, one or many machines:
    accelerate launch --multi_gpu --num_processes 2 --cpu recipes/train_lm.py --cpu ...      # CPU, 2 processes
    accelerate launch --num_processes 8 recipes/train_lm.py --mixed-precision bf16 ...     # 8 GPUs
Resume after an interruption (kill -9 included) from the last checkpoint:
    python recipes/train_lm.py ... --out runs/asr --resume

Tasks (the streams and their delays): ``asr``: the codec's codebooks are input, the text stream is
generated ``--text-delay`` frames after the audio; ``tts``: the text stream leads and the audio is
generated ``--audio-delay`` frames later, acoustic codebooks one more frame behind.
Batches are drawn from the step number and the seed alone, so a resumed run sees the same data
as an uninterrupted one. The run folder holds command.txt, log.jsonl, checkpoints/ and model/
(the LM, loadable with tokenlm.lm.load_lm).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import time
import warnings
from pathlib import Path

import torch

TASKS = ("asr", "tts", "duplex")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    d = p.add_argument_group("data")
    d.add_argument("--train", type=Path, nargs="+", required=True, help="folder(s) of token shards")
    d.add_argument("--valid", type=Path, help="folder of token shards for validation")
    d.add_argument("--tokenizer", type=Path, required=True, help="the tokenizer the shards used (sentencepiece "
                   "model or phone lexicon)")
    d.add_argument("--voices", default=None, help="comma-separated substrings: train only on utterances "
                   "whose voice matches one (needs --manifest)")
    d.add_argument("--manifest", type=Path, nargs="+", help="the manifest(s) the training shards came from "
                   "(for --voices)")
    d.add_argument("--max-frames", type=int, default=250, help="crop utterances to this many frames")
    m = p.add_argument_group("model")
    m.add_argument("--task", choices=TASKS, required=True)
    m.add_argument("--preset", default="small", help="model size (tokenlm.lm.LM_PRESETS)")
    m.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override an LMConfig field")
    m.add_argument("--init-from", metavar="LM", help="start from a trained LM (folder or bundled name): its "
                   "config and weights, a fresh optimizer")
    m.add_argument("--new-codec", action="store_true", help="with --init-from: the shards come from another codec "
                   "than the LM's; keep its weights but reset what names codes (code embeddings, audio output "
                   "heads; a codec-features model takes the new codec's codebook vectors)")
    m.add_argument("--new-tokenizer", action="store_true", help="with --init-from: the shards use another text "
                   "tokenizer than the LM's (e.g. phones); keep its weights but start the text embeddings and "
                   "the text output head again")
    m.add_argument("--time-masks", type=int, default=0, help="asr: per training utterance, this many spans of audio "
                   "input become 'no input' (SpecAugment-style; 0: off)")
    m.add_argument("--mask-frames", type=int, default=10, help="asr: longest such span, in frames")
    m.add_argument("--code-noise", type=float, default=0.0, help="asr: probability that an input audio code is "
                   "replaced by a random one during training")
    m.add_argument("--codebooks", type=int, default=None, help="use the first N codebooks of the shards")
    m.add_argument("--codec-features", action="store_true", help="a new model embeds audio codes through "
                   "the codec's own codebook vectors (LMConfig.codec_features; loads the codec the shards name)")
    m.add_argument("--text-delay", type=int, default=15, help="asr: frames the text lags the audio")
    m.add_argument("--audio-delay", type=int, default=2, help="tts: frames the audio lags the text")
    m.add_argument("--acoustic-delay", type=int, default=1, help="tts: extra lag of codebooks 1..")
    o = p.add_argument_group("optimisation")
    o.add_argument("--steps", type=int, default=10000)
    o.add_argument("--time-limit", type=float, default=None, metavar="MIN",
                   help="stop after this many minutes of this run (saving the model); the learning-rate schedule "
                        "then runs on whichever is further along, steps or time, so it has decayed when time is up")
    o.add_argument("--batch-size", type=int, default=16, help="per process and accumulation step")
    o.add_argument("--grad-accum", type=int, default=1)
    o.add_argument("--lr", type=float, default=1e-3)
    o.add_argument("--warmup", type=int, default=300)
    o.add_argument("--weight-decay", type=float, default=0.05)
    o.add_argument("--grad-clip", type=float, default=1.0)
    o.add_argument("--mixed-precision", choices=["no", "bf16", "fp16"], default="no")
    o.add_argument("--seed", type=int, default=0)
    r = p.add_argument_group("run")
    r.add_argument("--out", type=Path, required=True, help="run folder")
    r.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    r.add_argument("--save-every", type=int, default=250)
    r.add_argument("--keep", type=int, default=2)
    r.add_argument("--eval-every", type=int, default=500)
    r.add_argument("--eval-items", type=int, default=64)
    r.add_argument("--eval-wer-items", type=int, default=32, help="asr: greedy WER on this many valid utterances")
    r.add_argument("--log-every", type=int, default=10)
    r.add_argument("--cpu", action="store_true", help="train on the CPU even if a GPU is present")
    r.add_argument("--threads", type=int, default=0, help="torch threads per process (0: leave as is)")
    r.add_argument("--kill-at-step", type=int, help=argparse.SUPPRESS)  # tests: SIGKILL itself after this step
    return p.parse_args(argv)


def build_streams(args, meta: dict):
    from tokenlm.lm import Streams

    q = args.codebooks or meta["num_codebooks"]
    if not 1 <= q <= meta["num_codebooks"]:
        from tokenlm.errors import TokenLMError

        raise TokenLMError(f"--codebooks must be in 1..{meta['num_codebooks']} (what the shards hold), got {q}")
    if args.task == "asr":
        return Streams.asr(meta["text_card"], meta["codebook_size"], q, args.text_delay), q
    if args.task == "duplex":
        from tokenlm.lm.duplex import duplex_streams

        return duplex_streams(meta["text_card"], meta["codebook_size"], q, args.audio_delay, args.acoustic_delay), q
    return Streams.tts(meta["text_card"], meta["codebook_size"], q, args.audio_delay, args.acoustic_delay), q


def build_config(args, streams):
    from tokenlm.errors import TokenLMError
    from tokenlm.lm import LM_PRESETS, LMConfig

    if args.preset not in LM_PRESETS:
        raise TokenLMError(f"unknown preset '{args.preset}': choose from {', '.join(LM_PRESETS)}")
    fields = dict(LM_PRESETS[args.preset])
    names = {f.name for f in dataclasses.fields(LMConfig)} - {"streams"}
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in names:
            raise TokenLMError(f"--set {item}: LMConfig has no field '{key}'")
        try:
            fields[key] = json.loads(value)
        except json.JSONDecodeError:
            fields[key] = value
    return LMConfig(streams=streams.to_list(), **fields)


def shard_codec_codebooks(name: str, fingerprint: str, flag: str = "--codec-features") -> torch.Tensor:
    """The codebook vectors of the codec that made the shards (checked by its token fingerprint;
    a bundled codec with that fingerprint stands in when ``name`` has moved on, e.g. "default")."""
    import tokenlm.codecs as tc
    from tokenlm.errors import TokenLMError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        codec = tc.load(name)
        if codec.token_fingerprint != fingerprint and tc.bundled_for_tokens(fingerprint):
            codec = tc.load(tc.bundled_for_tokens(fingerprint))
    if codec.token_fingerprint != fingerprint:
        raise TokenLMError(f"{flag}: the codec '{name}' found here is not the one that made the shards "
                           f"(token fingerprint {codec.token_fingerprint} != {fingerprint})")
    try:
        return codec.codebook_vectors()
    except NotImplementedError as e:
        raise TokenLMError(f"{flag}: {e}") from None


def select_voices(shards, manifests: list[Path], voices: str) -> list[int]:
    from tokenlm.data.manifest import read_manifest
    from tokenlm.errors import TokenLMError

    by_id = {e["id"]: e.get("voice", "") for m in manifests for e in read_manifest(m)}
    keys = [v for v in voices.split(",") if v]
    keep = [i for i, uid in enumerate(shards.ids) if any(k in by_id.get(uid, "") for k in keys)]
    if not keep:
        raise TokenLMError(f"--voices {voices}: no training utterance has a matching voice")
    return keep


def batch_for(step: int, micro: int, rank: int, args, pool: list[int], shards, streams):
    from tokenlm.lm.data import collate

    seed = (args.seed * 1_000_003 + step) * 4099 + rank * 64 + micro
    if args.task == "duplex":
        import random

        return shards.sampler.batch(random.Random(seed), args.batch_size)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(pool), (args.batch_size,), generator=g).tolist()
    items = [(shards.codes[pool[i]], shards.text[pool[i]]) for i in idx]
    if args.task == "asr" and (args.time_masks or args.code_noise):
        from tokenlm.lm.data import augment_codes

        items = [(augment_codes(c, g, args.time_masks, args.mask_frames, args.code_noise, shards.meta["codebook_size"]),
                  t) for c, t in items]
    return collate(items, streams, args.max_frames, g)


@torch.no_grad()
def validate(accelerator, model, shards, streams, args, tokenizer) -> dict:
    from tokenlm.lm.data import collate
    from tokenlm.lm.streams import apply_delays

    model.eval()
    n = min(args.eval_items, len(shards))
    mine = list(range(accelerator.process_index, n, accelerator.num_processes))
    sums: dict[str, torch.Tensor] = {}
    for i in range(0, len(mine), args.batch_size):
        if args.task == "duplex":  # fixed dialogues of the held-out voices
            items = mine[i: i + args.batch_size]
            delayed, valid = apply_delays(torch.stack([shards.dialogues[j] for j in items]), streams)
        else:
            items = [(shards.codes[j], shards.text[j]) for j in mine[i: i + args.batch_size]]
            delayed, valid = collate(items, streams)
        with accelerator.autocast():
            loss, stats = model.loss(delayed.to(accelerator.device), valid.to(accelerator.device))
        w = float(len(items))
        for k, v in {"loss": loss.detach(), **stats}.items():
            sums[k] = sums.get(k, torch.zeros((), device=accelerator.device)) + v.float() * w
        sums["n"] = sums.get("n", torch.zeros((), device=accelerator.device)) + w
    keys = sorted(k for k in ["loss", *(f"{m}/{s.name}" for s in streams for m in ("loss", "acc", "wacc")
                                       if s.generated and (m != "wacc" or s.kind == "text"))])
    vec = torch.stack([sums.get(k, torch.zeros((), device=accelerator.device)) for k in keys + ["n"]])
    vec = accelerator.reduce(vec, "sum")
    total = max(float(vec[-1]), 1.0)
    out = {f"valid_{k}": round(float(v) / total, 4) for k, v in zip(keys, vec[:-1])}
    if args.task == "asr" and accelerator.is_main_process and args.eval_wer_items:
        from tokenlm.lm.evaluation import wer
        from tokenlm.lm.tasks import greedy_transcribe

        n = min(args.eval_wer_items, len(shards))
        hyps = greedy_transcribe(model, tokenizer, [shards.codes[i] for i in range(n)], shards.meta["frame_rate"])
        out["valid_wer"] = round(wer(shards.texts[:n], [" ".join(w.word for w in h) for h in hyps]), 4)
    model.train()
    return out


class DialogueData:
    """Duplex training data: a dialogue bank (recipes/build_duplex_data.py) and windows drawn from it."""

    def __init__(self, folders, args):
        from tokenlm.errors import TokenLMError
        from tokenlm.lm.duplex import DialogueBank

        folders = folders if isinstance(folders, (list, tuple)) else [folders]
        if len(folders) != 1:
            raise TokenLMError("duplex: give one dialogue bank folder to --train (and one to --valid)")
        self.bank = DialogueBank(folders[0])
        self.meta, self.args = self.bank.meta, args
        self.info = {"codec_name": self.bank.header.get("codec_name", "default"), **self.meta}
        self.codes = list(self.bank.user)  # for the size report
        self.ids = [str(i) for i in range(len(self.codes))]
        self.dialogues: list[torch.Tensor] = []

    def setup(self, streams):
        import random

        from tokenlm.lm.duplex import DialogueSampler

        self.sampler = DialogueSampler(self.bank, streams, frames=self.args.max_frames)
        rng = random.Random(1234)
        self.dialogues = [self.sampler.sample(rng) for _ in range(self.args.eval_items)]

    def __len__(self) -> int:
        return len(self.dialogues) if self.dialogues else len(self.codes)


def main(argv=None) -> int:
    args = parse_args(argv)
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm import tqdm

    from tokenlm.errors import TokenLMError
    from tokenlm.lm import LMConfig, TokenLM
    from tokenlm.lm.checkpoint import save_lm
    from tokenlm.lm.data import TokenShards
    from tokenlm.lm.tokenizer import load_tokenizer
    from tokenlm.training import Checkpoints, drop_log_after, record_command, warmup_cosine

    if args.new_codec and not args.init_from:
        raise TokenLMError("--new-codec goes with --init-from (the LM to move onto the shards' codec)")
    if args.new_tokenizer and not args.init_from:
        raise TokenLMError("--new-tokenizer goes with --init-from (the LM to move onto the shards' tokenizer)")
    if args.threads:
        torch.set_num_threads(args.threads)
    use_cpu = args.cpu or not torch.cuda.is_available()
    accelerator = Accelerator(cpu=use_cpu, mixed_precision=args.mixed_precision,
                              gradient_accumulation_steps=args.grad_accum)
    main_proc = accelerator.is_main_process
    run = args.out
    ckpts = Checkpoints(run, args.keep)
    resume_from = ckpts.latest() if args.resume else None
    if main_proc:
        run.mkdir(parents=True, exist_ok=True)
        if not args.resume and ckpts.latest() is not None:
            raise TokenLMError(f"{run} already holds checkpoints: pass --resume, or choose a new --out")
        record_command(run, accelerator)
    set_seed(args.seed + accelerator.process_index)

    load_data = (lambda f: DialogueData(f, args)) if args.task == "duplex" else TokenShards
    shards = load_data(args.train)
    meta = shards.meta
    tokenizer = load_tokenizer(args.tokenizer)
    if tokenizer.digest != meta["tokenizer"]:
        raise TokenLMError(f"{args.tokenizer} is not the tokenizer the training shards were made with")
    valid = load_data(args.valid) if args.valid else None
    if valid is not None and valid.meta != meta:
        raise TokenLMError(f"{args.valid}: made with a different codec or tokenizer than the training shards")
    pool = list(range(len(shards)))
    if args.voices:
        if not args.manifest:
            raise TokenLMError("--voices needs --manifest (the manifest the training shards came from)")
        pool = select_voices(shards, args.manifest, args.voices)
    streams, q = build_streams(args, meta)
    init = None
    if resume_from is not None:  # the checkpoint's config wins: it is what the weights fit
        cfg = LMConfig.from_dict(json.loads((resume_from / "trainer_state.json").read_text())["config"])
    elif args.init_from:  # fine-tune / continue a trained LM: its config and weights, fresh optimizer
        from tokenlm.lm.checkpoint import load_lm

        init = load_lm(args.init_from)
        if init.task != args.task:
            raise TokenLMError(f"--init-from {args.init_from} is a '{init.task}' model, not '{args.task}'")
        other_tokenizer = init.tokenizer.digest != tokenizer.digest
        if other_tokenizer and not args.new_tokenizer:
            raise TokenLMError(f"--init-from {args.init_from} uses another tokenizer than the shards: "
                               "pretokenize with the model's own tokenizer.model (or pass --new-tokenizer)")
        if args.new_tokenizer and not other_tokenizer:
            raise TokenLMError(f"--new-tokenizer: {args.init_from} uses the shards' tokenizer already")
        other_codec = init.codec_info.get("fingerprint") != meta["codec"]
        if other_codec and not args.new_codec:
            raise TokenLMError(f"--init-from {args.init_from} was trained on the tokens of another codec "
                               "(--new-codec starts it on the shards' codec)")
        if args.new_codec and not other_codec:
            raise TokenLMError(f"--new-codec: {args.init_from} was trained on the shards' codec already")
        cfg = init.model.config
        for item in args.set:  # only what leaves the weights as they are
            key, _, value = item.partition("=")
            if key != "dropout":
                raise TokenLMError(f"--set {item}: with --init-from only dropout can change (the model's size "
                                   "and streams are the trained model's)")
            cfg = dataclasses.replace(cfg, dropout=float(value))
        if args.new_tokenizer:  # the same streams, the text one with the new vocabulary
            cfg = dataclasses.replace(cfg, streams=[{**d, "card": tokenizer.vocab_size} if d["kind"] == "text" else d
                                                    for d in cfg.streams])
        if cfg.stream_specs != streams:
            raise TokenLMError(f"--init-from {args.init_from}: its streams differ from --task/--codebooks/delays "
                               f"({[(s.name, s.delay) for s in cfg.stream_specs][:3]}...)")
    else:
        cfg = build_config(args, streams)
        codebooks = None
        if args.codec_features:
            codebooks = shard_codec_codebooks(shards.info.get("codec_name", "default"), meta["codec"])
            cfg.codec_features = codebooks.shape[-1]
    model = TokenLM(cfg)
    if init is None and resume_from is None and cfg.codec_features:
        model.set_codec_codebooks(codebooks)
    if init is not None:
        if args.new_tokenizer:
            kept = model.load_matching(init.model.state_dict())
            if main_proc:
                print(f"--new-tokenizer: {kept} of {len(model.state_dict())} weights kept", file=sys.stderr)
        else:
            model.load_state_dict(init.model.state_dict())
        if args.new_codec:
            model.retarget_codec(shard_codec_codebooks(shards.info.get("codec_name", "default"), meta["codec"],
                                                       "--new-codec") if cfg.codec_features else None)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed" not in n and "prev_emb" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embed" not in n
                                                                 and "prev_emb" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(args.warmup, args.steps))
    model, opt, sched = accelerator.prepare(model, opt, sched)
    raw = accelerator.unwrap_model(model)

    step = 0
    if resume_from is not None:
        accelerator.load_state(str(resume_from))
        step = json.loads((resume_from / "trainer_state.json").read_text())["step"]
        if main_proc:
            drop_log_after(run / "log.jsonl", step)
            print(f"resumed from {resume_from} at step {step}", file=sys.stderr)
    codec_info = {"name": shards.info.get("codec_name", "default"), "fingerprint": meta["codec"], "num_codebooks": q,
                  "frame_rate": meta["frame_rate"]}
    if args.task == "duplex":
        shards.setup(streams)
        if valid is not None:
            valid.setup(streams)
    if main_proc and step == 0:
        print(f"{args.task} LM: {raw.num_parameters() / 1e6:.2f} M parameters, {len(pool)} training utterances "
              f"({sum(shards.codes[i].shape[1] for i in pool) / meta['frame_rate'] / 3600:.2f} h), "
              f"streams {[(s.name, s.delay) for s in streams][:3]}...", file=sys.stderr)

    def save(step):
        ckpts.save(accelerator, step, {"config": cfg.to_dict(), "args": json.loads(json.dumps(vars(args), default=str))})
        if main_proc:
            save_lm(raw, run / "model", tokenizer, task=args.task, codec=codec_info,
                    extra={"step": step, "voices": args.voices})

    lr_factor = warmup_cosine(args.warmup, args.steps)
    t_start, step0 = time.perf_counter(), step
    if args.time_limit is not None and args.time_limit <= 0:
        raise TokenLMError(f"--time-limit must be > 0 minutes, got {args.time_limit}")

    def time_up() -> tuple[bool, float]:
        """(time is up, schedule position): the main process's clock, broadcast so that every process
        agrees on the learning rate and on when to stop."""
        elapsed = time.perf_counter() - t_start
        if accelerator.num_processes > 1:
            from accelerate.utils import broadcast

            elapsed = float(broadcast(torch.tensor([elapsed], device=accelerator.device), from_process=0))
        frac = elapsed / (60.0 * args.time_limit)
        # a run that resumed part-way through the steps spends its time on the steps that are left
        position = max(step, step0 + frac * (args.steps - step0))
        return frac >= 1.0, position

    bar = tqdm(total=args.steps, initial=step, disable=not main_proc, desc=f"train {args.task}", dynamic_ncols=True)
    log = open(run / "log.jsonl", "a") if main_proc else None
    model.train()
    t_last = time.perf_counter()
    while step < args.steps:
        for micro in range(args.grad_accum):
            delayed, valid_mask = batch_for(step, micro, accelerator.process_index, args, pool, shards, streams)
            with accelerator.accumulate(model), accelerator.autocast():
                delayed, valid_mask = delayed.to(accelerator.device), valid_mask.to(accelerator.device)
                # through the (possibly DDP-wrapped) module, so that gradients are all-reduced
                loss, stats = raw.loss_from_logits(model(delayed), delayed, valid_mask)
                accelerator.backward(loss)
                grad_norm = None
                if accelerator.sync_gradients:
                    grad_norm = accelerator.clip_grad_norm_(model.parameters(), args.grad_clip)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
        step += 1
        bar.update(1)
        stop = False
        if args.time_limit is not None:
            stop, position = time_up()
            for g in opt.param_groups:  # the time-aware schedule overrides the step-based one
                g["lr"] = g["initial_lr"] * lr_factor(int(position))
        if not torch.isfinite(loss):
            raise RuntimeError(f"loss is {loss.item()} at step {step}: lower --lr or check the data")
        if main_proc and (step % args.log_every == 0 or step == 1):
            now = time.perf_counter()
            row = {"step": step, "loss": loss.item(), **{k: round(float(v), 4) for k, v in stats.items()},
                   "grad_norm": float(grad_norm) if grad_norm is not None else None, "lr": opt.param_groups[0]["lr"],
                   "sec_per_step": (now - t_last) / (1 if step == 1 else args.log_every)}
            t_last = now
            log.write(json.dumps(row) + "\n")
            log.flush()
            bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{float(stats[f'acc/{streams[streams.generated[0]].name}']):.3f}")
        if valid is not None and (step % args.eval_every == 0 or step == args.steps):
            v = validate(accelerator, raw, valid, streams, args, tokenizer)
            if main_proc:
                log.write(json.dumps({"step": step, **v}) + "\n")
                log.flush()
                bar.write(f"step {step}: " + ", ".join(f"{k[6:]} {x:.3f}" for k, x in v.items()))
        last = step == args.steps or stop
        if valid is not None and stop and step % args.eval_every != 0:
            v = validate(accelerator, raw, valid, streams, args, tokenizer)
            if main_proc:
                log.write(json.dumps({"step": step, **v}) + "\n")
                log.flush()
                bar.write(f"step {step}: " + ", ".join(f"{k[6:]} {x:.3f}" for k, x in v.items()))
        if step % args.save_every == 0 or last:
            save(step)
        if step == args.kill_at_step:
            os.kill(os.getpid(), signal.SIGKILL)
        if stop:
            if main_proc:
                bar.write(f"--time-limit {args.time_limit:g} min reached at step {step}")
            break
    bar.close()
    if log:
        log.close()
    accelerator.wait_for_everyone()
    accelerator.end_training()
    if main_proc:
        print(f"done: {step} steps; the LM is in {run / 'model'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    from tokenlm.errors import TokenLMError

    try:
        sys.exit(main())
    except TokenLMError as e:
        print(f"train_lm: error: {e}", file=sys.stderr)
        sys.exit(1)
