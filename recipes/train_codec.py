"""Train tokenlm's RVQ codec on a speech manifest.

One CPU process:
    python recipes/train_codec.py --train data/corpus/train.jsonl --valid data/corpus/valid.jsonl --out runs/codec
Several CPU processes (gloo) or GPUs, one or many machines:
    accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no \\
        --dynamo_backend no --main_process_port 29511 recipes/train_codec.py --cpu ...   # CPU, 2 processes
    accelerate launch --num_processes 8 recipes/train_codec.py --mixed-precision bf16 ...   # 8 GPUs
Resume after an interruption (kill -9 included) from the last checkpoint:
    python recipes/train_codec.py ... --out runs/codec --resume

Losses: L1 on the waveform, multi-scale mel (L1 on mel and log mel), optionally a multi-resolution
linear STFT loss (--stft-weight: spectral convergence + L1 log magnitude), commitment, and
(from --adv-start on; --adv-weight 0 switches it off) an MS-STFT discriminator with
hinge adversarial and feature-matching losses. --phone-weight adds phonetic supervision of the
first codebook: a linear phone classifier on its codeword (straight-through to the encoder),
cross-entropy against the manifest's phone timings (build_corpus.py --phones; entries without
timings carry no label), so that codebook 0 becomes a "semantic" codebook, like Mimi's distilled
one but supervised by phones. The classifier is a training aid and is not part of the codec.
--phonetic-judge with --phonetic-weight adds a phonetic loss on the decoded audio: the KL divergence
from a frozen phone classifier's posteriors on the original to those on the decoded audio
(tokenlm.codecs.phonetic; train one with train_phone_judge.py), so the decoder renders the phones
its codes carry; it needs no labels in --train. Codebooks: k-means init on the first batch, EMA updates and dead-code replacement, all-reduced across processes so every
process holds the same codebooks (checked at every checkpoint).

The run folder holds: command.txt (every invocation), log.jsonl (training and
validation metrics), checkpoints/step_NNNNNNN/ (full training state) with `latest`
naming the newest, and model/ (the inference codec, loadable with tokenlm.codecs.load).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

PHONE_HEAD_LR_MULT = 10.0  # the phone classifier's learning rate over --lr


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    d = p.add_argument_group("data")
    d.add_argument("--train", type=Path, required=True, help="training manifest (JSONL)")
    d.add_argument("--valid", type=Path, help="validation manifest (JSONL)")
    d.add_argument("--segment-seconds", type=float, default=1.0, help="crop length (rounded to whole frames)")
    d.add_argument("--workers", type=int, default=1, help="data-loading worker processes per process")
    m = p.add_argument_group("model")
    m.add_argument("--preset", default="speech16k", help="codec preset (tokenlm.codecs.PRESETS)")
    m.add_argument("--init-from", metavar="CODEC",
                   help="start from these weights (a codec checkpoint, or 'default'), e.g. to fine-tune the "
                        "bundled codec on your own data; its config replaces --preset")
    m.add_argument("--decoder-only", action="store_true",
                   help="fine-tune only the decoder of --init-from: the encoder and codebooks stay frozen, so "
                        "codes, token files and token LMs made with that codec stay valid")
    m.add_argument("--decoder-codebooks", type=int, metavar="N",
                   help="with --decoder-only: decode from the first N codebooks at every step (the number a "
                        "token LM generates), not a random number of them half of the time")
    m.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a RVQCodecConfig field, e.g. --set codebook_dim=64 (repeatable); with --init-from "
                        "only the decoder_* fields (a new, larger decoder on the same codes)")
    o = p.add_argument_group("optimisation")
    o.add_argument("--steps", type=int, default=20000)
    o.add_argument("--batch-size", type=int, default=8, help="per process")
    o.add_argument("--lr", type=float, default=3e-4)
    o.add_argument("--warmup", type=int, default=500)
    o.add_argument("--grad-clip", type=float, default=1.0)
    o.add_argument("--l1-weight", type=float, default=0.1)
    o.add_argument("--mel-weight", type=float, default=1.0)
    o.add_argument("--stft-weight", type=float, default=0.0,
                   help="multi-resolution linear STFT loss (resolves harmonics; 0: off)")
    o.add_argument("--commit-weight", type=float, default=1.0)
    o.add_argument("--adv-weight", type=float, default=1.0, help="0 disables the discriminator")
    o.add_argument("--fm-weight", type=float, default=2.0)
    o.add_argument("--adv-start", type=int, default=2000, help="step at which the discriminator starts")
    o.add_argument("--disc-channels", type=int, default=16)
    o.add_argument("--phone-weight", type=float, default=0.0,
                   help="weight of the phone classification loss on codebook 0 (needs phone timings)")
    o.add_argument("--phonetic-judge", metavar="DIR",
                   help="a phone judge (train_phone_judge.py) for the phonetic loss on the decoded audio")
    o.add_argument("--phonetic-weight", type=float, default=0.0,
                   help="weight of the phonetic loss (KL of the judge's phone posteriors, original -> decoded)")
    o.add_argument("--dead-code-threshold", type=float, default=None,
                   help="EMA usage under which a code is replaced (default: scaled to the vectors per step, "
                        "min(2, 0.25 * vectors / codebook_size); a fixed 2 with small batches replaces "
                        "nearly every code at every step)")
    o.add_argument("--kmeans-batches", type=int, default=8,
                   help="batches pooled for the k-means codebook init before step 1 (more vectors, better codes)")
    o.add_argument("--mixed-precision", choices=["no", "bf16", "fp16"], default="no")
    o.add_argument("--seed", type=int, default=0)
    r = p.add_argument_group("run")
    r.add_argument("--out", type=Path, required=True, help="run folder")
    r.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    r.add_argument("--save-every", type=int, default=500)
    r.add_argument("--keep", type=int, default=2, help="checkpoints to keep")
    r.add_argument("--eval-every", type=int, default=500)
    r.add_argument("--eval-items", type=int, default=32)
    r.add_argument("--log-every", type=int, default=10)
    r.add_argument("--cpu", action="store_true", help="train on the CPU even if a GPU is present")
    r.add_argument("--threads", type=int, default=0, help="torch threads per process (0: leave as is)")
    r.add_argument("--kill-at-step", type=int, help=argparse.SUPPRESS)  # tests: SIGKILL itself after this step
    return p.parse_args(argv)


def build_config(preset: str, overrides: list[str]):
    from tokenlm.codecs import PRESETS
    from tokenlm.errors import TokenLMError

    if preset not in PRESETS:
        raise TokenLMError(f"unknown preset '{preset}': choose from {', '.join(PRESETS)}")
    return apply_overrides(PRESETS[preset], overrides)


def apply_overrides(cfg, overrides: list[str]):
    from tokenlm.errors import TokenLMError

    names = {f.name for f in dataclasses.fields(cfg)}
    changes = {}
    for item in overrides:
        key, _, value = item.partition("=")
        if key not in names:
            raise TokenLMError(f"--set {item}: RVQCodecConfig has no field '{key}'")
        try:
            parsed = json.loads(value)  # numbers, true/false/null, [lists]
        except json.JSONDecodeError:
            parsed = value
        default = getattr(cfg, key)
        changes[key] = tuple(parsed) if isinstance(default, tuple) else parsed
    return dataclasses.replace(cfg, **changes)


def si_sdr(est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Scale-invariant SDR in dB per item, over [B, C, T]."""
    est, ref = est - est.mean(-1, keepdim=True), ref - ref.mean(-1, keepdim=True)
    alpha = (est * ref).sum(-1, keepdim=True) / ref.pow(2).sum(-1, keepdim=True).clamp_min(1e-8)
    target = alpha * ref
    ratio = target.pow(2).sum(-1) / (est - target).pow(2).sum(-1).clamp_min(1e-8)
    return 10 * torch.log10(ratio.clamp_min(1e-8)).mean(-1)


def phone_loss(codec, head, out, labels: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Cross-entropy of phone classes from codebook 0's codeword (straight-through: the gradient
    reaches the encoder as if the codeword were its latent), averaged over labelled frames; 0 with
    the graph kept (every process must touch the head's weights) when a batch has no label."""
    with torch.no_grad():
        first = codec.quantizer.decode(out.codes[:, :1])
    latent = out.latent.float()
    x = latent + (first - latent).detach()
    logits = head(x.transpose(1, 2)).float()  # [B, F, classes]
    frames = min(logits.shape[1], labels.shape[1])
    logits, labels = logits[:, :frames], labels[:, :frames]
    known = labels >= 0
    ce = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="sum")
    ce = ce / known.sum().clamp_min(1)
    acc = (logits.argmax(-1)[known] == labels[known]).float().mean().item() if known.any() else float("nan")
    return ce, acc


@torch.no_grad()
def validate(accelerator, codec, mel_loss, dataset, args, phone_head=None, judge=None) -> dict:
    from tokenlm.data.loader import eval_batches

    codec.eval()
    # n, mel, sisdr, phones right / labelled, judge's KL, judge's agreement
    totals = torch.zeros(7, device=accelerator.device)
    usage = torch.zeros(codec.num_codebooks, codec.codebook_size, device=accelerator.device)
    for batch in eval_batches(dataset, args.batch_size, args.eval_items, accelerator.process_index,
                              accelerator.num_processes):
        wav = batch["wav"].to(accelerator.device)
        codes = codec.encode(wav)
        rec = codec.decode(codes)
        totals[0] += wav.shape[0]
        totals[1] += mel_loss(rec, wav) * wav.shape[0]
        totals[2] += si_sdr(rec, wav).sum()
        for q in range(codec.num_codebooks):
            usage[q] += torch.bincount(codes[:, q].flatten(), minlength=codec.codebook_size)
        if judge is not None:
            kl, agree = phonetic_loss(judge, rec, wav)
            totals[5] += kl * wav.shape[0]
            totals[6] += agree * wav.shape[0]
        if phone_head is not None:
            labels = batch["phones"].to(accelerator.device)
            pred = phone_head(codec.quantizer.decode(codes[:, :1]).transpose(1, 2)).argmax(-1)[:, : labels.shape[1]]
            known = labels[:, : pred.shape[1]] >= 0
            totals[3] += (pred[known] == labels[:, : pred.shape[1]][known]).sum()
            totals[4] += known.sum()
    totals = accelerator.reduce(totals, "sum")
    usage = accelerator.reduce(usage, "sum")
    probs = usage / usage.sum(-1, keepdim=True).clamp_min(1)
    perplexity = torch.exp(-(probs * probs.clamp_min(1e-12).log()).sum(-1))  # effective codes used per codebook
    codec.train()
    n = max(totals[0].item(), 1)
    out = {
        "valid_mel": totals[1].item() / n,
        "valid_si_sdr": totals[2].item() / n,
        "valid_perplexity": [round(x, 1) for x in perplexity.tolist()],
        "valid_items": int(totals[0].item()),
    }
    if judge is not None:
        out["valid_phonetic"] = round(totals[5].item() / n, 4)
        out["valid_judge_agree"] = round(totals[6].item() / n, 4)
    if phone_head is not None and totals[4] > 0:
        out["valid_phone_acc"] = round(totals[3].item() / totals[4].item(), 4)
    return out


def phonetic_loss(judge, rec, wav):
    from tokenlm.codecs.phonetic import phonetic_loss as kl

    return kl(judge, rec, wav)


def codebook_checksum(codec) -> torch.Tensor:
    return codec.quantizer.codebooks.double().sum().reshape(1)


def main(argv=None) -> int:
    args = parse_args(argv)
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm import tqdm

    from tokenlm.codecs import RVQCodec, save_codec
    from tokenlm.codecs.losses import (
        MultiResolutionSTFTLoss,
        MultiScaleMelLoss,
        MultiScaleSTFTDiscriminator,
        discriminator_loss,
        feature_matching_loss,
        generator_adversarial_loss,
    )
    from tokenlm.data.loader import CropDataset, train_loader
    from tokenlm.data.manifest import read_manifest
    from tokenlm.errors import TokenLMError
    from tokenlm.training import Checkpoints, drop_log_after, record_command, warmup_cosine

    if args.threads:
        torch.set_num_threads(args.threads)
    use_cpu = args.cpu or not torch.cuda.is_available()
    accelerator = Accelerator(cpu=use_cpu, mixed_precision=args.mixed_precision)
    main_proc = accelerator.is_main_process
    run = args.out
    ckpts = Checkpoints(run, args.keep)
    resume_from = ckpts.latest() if args.resume else None
    if main_proc:
        run.mkdir(parents=True, exist_ok=True)
        if not args.resume and ckpts.latest() is not None:
            raise SystemExit(f"train_codec: {run} already holds checkpoints: pass --resume, or choose a new --out")
        record_command(run, accelerator)
    set_seed(args.seed + accelerator.process_index)

    init = None
    if args.init_from and resume_from is None:
        from tokenlm.codecs import load

        init = load(args.init_from)
        if not isinstance(init, RVQCodec):
            raise TokenLMError(f"--init-from {args.init_from}: only tokenlm RVQ codecs can be trained here")
    cfg = build_config(args.preset, args.set) if init is None else apply_overrides(init.config, args.set)
    new_decoder = False
    if init is not None and cfg != init.config:
        from tokenlm.codecs.rvq_codec import DECODER_FIELDS

        changed = [f.name for f in dataclasses.fields(cfg) if getattr(cfg, f.name) != getattr(init.config, f.name)]
        if set(changed) - set(DECODER_FIELDS):
            raise TokenLMError(f"--set {' '.join(args.set)} with --init-from: only the decoder's size "
                               f"({', '.join(DECODER_FIELDS)}) can change in a trained codec")
        new_decoder = True
    if resume_from is not None:  # the checkpoint's config wins: it is what the weights fit
        from tokenlm.codecs import RVQCodecConfig

        cfg = RVQCodecConfig.from_dict(json.loads((resume_from / "trainer_state.json").read_text())["config"])
    segment = max(1, round(args.segment_seconds * cfg.frame_rate)) * cfg.hop_length
    if resume_from is None:  # a fine-tune keeps its codec's threshold unless told otherwise
        vectors = args.batch_size * accelerator.num_processes * segment // cfg.hop_length  # per step, all processes
        threshold = args.dead_code_threshold
        if threshold is None and init is None:
            threshold = min(2.0, 0.25 * vectors / cfg.codebook_size)
        if threshold is not None:
            cfg = dataclasses.replace(cfg, dead_code_threshold=round(threshold, 4))
    train_entries = read_manifest(args.train)
    phone_names = None
    if resume_from is not None:
        saved = json.loads((resume_from / "trainer_state.json").read_text()).get("phones")
        if bool(saved) != (args.phone_weight > 0):
            raise TokenLMError(f"--resume: {resume_from} was trained {'with' if saved else 'without'} "
                               "--phone-weight; resume it the same way")
        phone_names = saved
    elif args.phone_weight > 0:
        from tokenlm.data.phones import check_inventory, phone_inventory

        phone_names = phone_inventory(train_entries)
        check_inventory(phone_names)
    classes = {n: i for i, n in enumerate(phone_names)} if phone_names else None
    train_set = CropDataset(train_entries, cfg.sample_rate, segment, cfg.channels, classes, cfg.hop_length)
    valid_set = (CropDataset(read_manifest(args.valid), cfg.sample_rate, 2 * segment, cfg.channels, classes,
                             cfg.hop_length) if args.valid else None)

    codec = RVQCodec(cfg, sync_codebook=accelerator.num_processes > 1)
    if init is not None and new_decoder:  # encoder and codebooks from the trained codec, a new decoder
        from tokenlm.codecs.rvq_codec import grow_decoder

        state = {k: v for k, v in init.state_dict().items() if not k.startswith("decoder.")}
        missing, unexpected = codec.load_state_dict(state, strict=False)
        assert not unexpected and all(k.startswith("decoder.") for k in missing)
        grown = grow_decoder(init, codec)  # deeper, same widths: starts as the old decoder
        if main_proc:
            n = sum(p.numel() for p in codec.decoder.parameters())
            how = "grown from its decoder (new blocks start as the identity)" if grown else "trained from scratch"
            print(f"train_codec: a new decoder ({n / 1e6:.2f} M parameters) on {args.init_from}'s codes, {how}",
                  file=sys.stderr)
    elif init is not None:
        codec.load_state_dict(init.state_dict())
    judge = None
    if (args.phonetic_weight > 0) != bool(args.phonetic_judge):
        raise TokenLMError("--phonetic-weight and --phonetic-judge go together")
    if args.phonetic_judge:
        from tokenlm.codecs.phonetic import load_phone_judge

        judge = load_phone_judge(args.phonetic_judge, accelerator.device)
    if args.decoder_codebooks is not None and not (args.decoder_only and 1 <= args.decoder_codebooks
                                                   <= cfg.num_codebooks):
        raise TokenLMError(f"--decoder-codebooks goes with --decoder-only and counts 1..{cfg.num_codebooks} "
                           f"codebooks, got {args.decoder_codebooks}")
    if args.decoder_only:
        if init is None and resume_from is None:
            raise TokenLMError("--decoder-only fine-tunes a trained codec: pass --init-from")
        for name, p in codec.named_parameters():
            p.requires_grad_(name.startswith("decoder."))
    token_fp = codec.token_fingerprint if init is not None else None
    mel_loss = MultiScaleMelLoss(cfg.sample_rate).to(accelerator.device)
    stft_loss = MultiResolutionSTFTLoss().to(accelerator.device) if args.stft_weight > 0 else None
    use_adv = args.adv_weight > 0
    disc = MultiScaleSTFTDiscriminator(channels=args.disc_channels, in_channels=cfg.channels) if use_adv else None
    phone_head = torch.nn.Linear(cfg.dimension, len(phone_names)) if phone_names else None
    trained = [{"params": [p for p in codec.parameters() if p.requires_grad]}]
    if phone_head is not None:  # a fresh classifier: a faster learning rate, so its gradient soon means something
        trained.append({"params": list(phone_head.parameters()), "lr": PHONE_HEAD_LR_MULT * args.lr})
    opt_g = torch.optim.AdamW(trained, lr=args.lr, betas=(0.8, 0.99), weight_decay=0.0)

    sched_g = torch.optim.lr_scheduler.LambdaLR(opt_g, warmup_cosine(args.warmup, args.steps))
    objects = [codec, opt_g, sched_g]
    if use_adv:
        opt_d = torch.optim.AdamW(disc.parameters(), lr=args.lr, betas=(0.8, 0.99), weight_decay=0.0)
        objects += [disc, opt_d]
    if phone_head is not None:
        objects.append(phone_head)
    prepared = accelerator.prepare(*objects)
    codec, opt_g, sched_g = prepared[:3]
    if phone_head is not None:
        phone_head = prepared[-1]
    if use_adv:
        disc, opt_d = prepared[3:5]
        # the generator's pass through the discriminator needs no gradient sync of its weights
        raw_disc = accelerator.unwrap_model(disc)
    raw = accelerator.unwrap_model(codec)

    step = 0
    if resume_from is not None:
        accelerator.load_state(str(resume_from))
        step = json.loads((resume_from / "trainer_state.json").read_text())["step"]
        if main_proc:
            drop_log_after(run / "log.jsonl", step)  # rows the interrupted run logged past its checkpoint
            print(f"resumed from {resume_from} at step {step}", file=sys.stderr)
    loader = train_loader(train_set, args.batch_size, args.seed, accelerator.process_index, step, args.workers)
    if step == 0 and init is None and resume_from is None and args.kmeans_batches > 0:
        # k-means on one batch sees only batch * frames vectors (fewer than the codebook size):
        # pool several batches, from their own stream, for the initial codebooks
        init = train_loader(train_set, args.batch_size * args.kmeans_batches, args.seed + 1_000_003,
                            accelerator.process_index)
        wav = next(iter(init))["wav"].to(accelerator.device)
        with torch.no_grad():
            raw.train()
            raw.quantizer(raw.encoder(wav))

    def save(step):
        if args.decoder_only and token_fp is not None and raw.token_fingerprint != token_fp:
            raise RuntimeError("--decoder-only: the encoder or codebooks changed; this is a bug")
        sums = accelerator.gather(codebook_checksum(raw))
        if not torch.allclose(sums, sums[0].expand_as(sums)):
            raise RuntimeError(f"codebooks differ across processes at step {step}: {sums.tolist()}")
        ckpts.save(accelerator, step, {"config": cfg.to_dict(), "args": vars(args) | {"out": str(args.out),
                   "train": str(args.train), "valid": str(args.valid)}, "phones": phone_names})
        if main_proc:
            save_codec(raw, run / "model")

    bar = tqdm(total=args.steps, initial=step, disable=not main_proc, desc="train codec", dynamic_ncols=True)
    log = open(run / "log.jsonl", "a") if main_proc else None
    codec.train()
    t_last = time.perf_counter()
    for batch in loader:
        if step >= args.steps:
            break
        wav = batch["wav"].to(accelerator.device)
        frozen = None
        if args.decoder_codebooks:  # the decoder tuned for one bitrate
            frozen = args.decoder_codebooks
        elif args.decoder_only:  # quantizer dropout, favouring the full bitrate
            q = cfg.num_codebooks
            frozen = q if torch.rand(()) < 0.5 else int(torch.randint(1, q + 1, ()))
        with accelerator.autocast():
            out = codec(wav, frozen_codes=frozen) if frozen else codec(wav)
        rec = out.wav.float()
        metrics = {"codebooks": frozen} if frozen else {}
        adv_on = use_adv and step >= args.adv_start
        if adv_on:  # discriminator step: real and detached decoded audio in one forward (one DDP pass)
            logits, _ = disc(torch.cat([wav, rec.detach()]))
            n = wav.shape[0]
            d_loss = discriminator_loss([x[:n] for x in logits], [x[n:] for x in logits])
            opt_d.zero_grad(set_to_none=True)
            accelerator.backward(d_loss)
            accelerator.clip_grad_norm_(disc.parameters(), args.grad_clip)
            opt_d.step()
            metrics["d_loss"] = d_loss.item()
        l1 = F.l1_loss(rec, wav)
        mel = mel_loss(rec, wav)
        loss = args.l1_weight * l1 + args.mel_weight * mel + args.commit_weight * out.commit_loss
        if phone_head is not None:
            ce, acc = phone_loss(raw, phone_head, out, batch["phones"].to(accelerator.device))
            loss = loss + args.phone_weight * ce
            metrics |= {"phone_ce": ce.item(), "phone_acc": acc}
        if judge is not None:
            kl, agree = phonetic_loss(judge, rec, wav)
            loss = loss + args.phonetic_weight * kl
            metrics |= {"phonetic": kl.item(), "judge_agree": agree}
        if stft_loss is not None:
            stft = stft_loss(rec, wav)
            loss = loss + args.stft_weight * stft
            metrics["stft"] = stft.item()
        if adv_on:
            with torch.no_grad():
                _, real_feats = raw_disc(wav)
            fake_logits, fake_feats = raw_disc(rec)
            g_adv = generator_adversarial_loss(fake_logits)
            fm = feature_matching_loss(real_feats, fake_feats)
            loss = loss + args.adv_weight * g_adv + args.fm_weight * fm
            metrics |= {"g_adv": g_adv.item(), "fm": fm.item()}
        opt_g.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        grad_norm = accelerator.clip_grad_norm_(codec.parameters(), args.grad_clip)
        opt_g.step()
        sched_g.step()
        step += 1
        bar.update(1)
        if not torch.isfinite(loss):
            raise RuntimeError(f"loss is {loss.item()} at step {step}: lower --lr or check the data")

        if main_proc and (step % args.log_every == 0 or step == 1):
            now = time.perf_counter()
            metrics |= {"step": step, "loss": loss.item(), "l1": l1.item(), "mel": mel.item(),
                        "commit": out.commit_loss.item(), "grad_norm": float(grad_norm),
                        "lr": sched_g.get_last_lr()[0], "sec_per_step": (now - t_last) / (1 if step == 1 else args.log_every)}
            t_last = now
            log.write(json.dumps(metrics) + "\n")
            log.flush()
            bar.set_postfix(loss=f"{loss.item():.3f}", mel=f"{mel.item():.3f}")
        if valid_set is not None and (step % args.eval_every == 0 or step == args.steps):
            v = validate(accelerator, raw, mel_loss, valid_set, args,
                         accelerator.unwrap_model(phone_head) if phone_head is not None else None, judge)
            if main_proc:
                log.write(json.dumps({"step": step, **v}) + "\n")
                log.flush()
                phones = f", phone accuracy {v['valid_phone_acc']:.3f}" if "valid_phone_acc" in v else ""
                if "valid_phonetic" in v:
                    phones += f", phonetic KL {v['valid_phonetic']:.3f} (judge agrees {v['valid_judge_agree']:.3f})"
                bar.write(f"step {step}: valid mel {v['valid_mel']:.3f}, SI-SDR {v['valid_si_sdr']:.2f} dB, "
                          f"code perplexity {v['valid_perplexity']}{phones}")
        if step % args.save_every == 0 or step == args.steps:
            save(step)
        if step == args.kill_at_step:
            os.kill(os.getpid(), signal.SIGKILL)
    bar.close()
    if log:
        log.close()
    accelerator.wait_for_everyone()
    accelerator.end_training()
    if main_proc:
        print(f"done: {step} steps; inference codec in {run / 'model'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    from tokenlm.errors import TokenLMError

    try:
        sys.exit(main())
    except TokenLMError as e:
        print(f"train_codec: error: {e}", file=sys.stderr)
        sys.exit(1)
