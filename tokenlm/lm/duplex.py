"""Full-duplex data: spoken questions from a small grammar, spoken answers, and two-speaker dialogues.

The full-duplex model listens to the user's audio (input-only streams ``in_q``) and, at the same
time, writes its own text (the inner monologue, stream ``text``) and speaks (streams ``audio_q``,
a couple of frames behind its text). Its task here is one a small model can learn and a listener
can check: **answer simple spoken questions** from :data:`GRAMMAR` (sums of small numbers,
colours of things, opposites, a few greetings), in one fixed voice, and **stop talking when the
user talks over it** (barge-in), then answer the new question.

:func:`build_dialogues` makes a split's data (one safetensors "dialogue bank"):

- every question spoken in many voices (espeak-ng and flite, the speech corpus's voice splits, so
  valid and test voices are never heard in training) and every answer in the model's voice;
- dialogue scripts: the user asks, pauses; the model answers ``gap`` frames after the question
  ends; sometimes (``barge_in``) the user asks the next question while the model is still talking,
  and the model's audio and words stop a few frames later;
- the user's side of each dialogue rendered as one waveform (a faint noise floor at a random level,
  or digital silence) and encoded *continuously* by the codec, exactly as a live stream would be
  (the codec's silence codes drift with its context, so clips are not pasted at the token level);
- the model's side kept as answer clips (codes) and the script, laid out at training time.

:class:`DialogueSampler` turns a bank into training windows: aligned streams ``[K, T]`` in the
duplex layout of :func:`duplex_streams`, randomly cropped.
"""

from __future__ import annotations

import json
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import TokenLMError
from .streams import Streams, apply_delays

__all__ = ["GRAMMAR", "MODEL_VOICE", "qa_pairs", "duplex_streams", "build_dialogues", "DialogueBank",
           "DialogueSampler", "Turn", "plan_dialogue"]

NUMBERS = "zero one two three four five six seven eight nine ten".split()
COLOURS = {"the sky": "blue", "grass": "green", "snow": "white", "the sun": "yellow", "coal": "black",
           "a tomato": "red", "an orange": "orange"}
OPPOSITES = {"up": "down", "hot": "cold", "big": "small", "day": "night", "yes": "no", "left": "right",
             "fast": "slow", "open": "closed"}
GREETINGS = {"hello": "hi there", "good morning": "good morning to you", "how are you": "i am fine thank you",
             "what is your name": "my name is token", "thank you": "you are welcome", "goodbye": "see you later"}
GRAMMAR = {"sums": "what is A plus B (A, B in one..five)", "colours": "what colour is X",
           "opposites": "what is the opposite of X", "greetings": ", ".join(GREETINGS)}
MODEL_VOICE = ("flite", "kal16")


def qa_pairs() -> list[tuple[str, str]]:
    """Every (question, answer) of the grammar, in a fixed order."""
    out = [(f"what is {NUMBERS[a]} plus {NUMBERS[b]}", NUMBERS[a + b]) for a in range(1, 6) for b in range(1, 6)]
    out += [(f"what color is {x}", y) for x, y in COLOURS.items()]
    out += [(f"what is the opposite of {x}", y) for x, y in OPPOSITES.items()]
    out += list(GREETINGS.items())
    return out


def duplex_streams(text_card: int, audio_card: int, num_codebooks: int, audio_delay: int = 2,
                   acoustic_delay: int = 1) -> Streams:
    """The duplex layout: model text (delay 0), model audio ``audio_q`` (``audio_delay`` behind, the
    acoustic codebooks one more), user audio ``in_q`` (input only, undelayed)."""
    return Streams.build(text_card, audio_card, num_codebooks, audio_delay=audio_delay,
                         acoustic_delay=acoustic_delay, input_audio=True, text_weight=1.0,
                         semantic_weight=1.0, acoustic_weight=0.5)


# ---- dialogue banks ---------------------------------------------------------------------------


def _speak(text: str, engine: str, voice: str, rate: float, pitch: float, seed: int) -> tuple[torch.Tensor, list]:
    from ..data import tts

    eng = tts.get_engine(engine)
    tts.seed_noise(seed)
    wav, words = eng.synthesize(text, voice, rate=rate, pitch=pitch)
    wav, words = tts.trim_silence(wav, words)
    peak = wav.abs().max()
    if not torch.isfinite(wav).all() or peak <= 0 or len(words) != len(text.split()):
        raise TokenLMError(f"{engine}/{voice} could not speak {text!r}")
    rms = wav.square().mean().sqrt()
    return wav[0] * (0.1 / rms).clamp(max=0.9 / peak), words


def _voices(split: str) -> list[tuple[str, str]]:
    from ..data import tts
    from ..data.corpus import voice_splits

    return voice_splits(tts.get_engine("espeak-ng").voices())[split]


@dataclass
class Turn:
    pair: int  # index into qa_pairs()
    question: int  # question clip index
    q_start: int  # frame of the question's first word
    q_end: int  # frame after its last word
    answer: int  # answer clip index
    a0: int  # frame where the answer clip starts
    a_start: int  # frame of the answer's first word
    a_end: int  # frame after the answer's last word (or where it was cut)
    cut: int | None = None  # barge-in: the model stops here

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def plan_dialogue(rng: random.Random, frames: int, questions: dict[int, list[int]], q_words: list[list[dict]],
                  answers: dict[str, list[int]], a_words: list[list[dict]], pairs: list[tuple[str, str]], *,
                  gap=(5, 10), pause=(4, 40), barge_in=0.25, stop_after=(3, 6), lead=(3, 40)) -> list[Turn]:
    """A dialogue script of ``frames`` frames (word times of the clips in frames, from clip start)."""
    turns: list[Turn] = []
    t = rng.randint(*lead)
    while t < frames:
        pair = rng.randrange(len(pairs))
        qi = rng.choice(questions[pair])
        qw = q_words[qi]
        q_end = t + qw[-1]["end"] - qw[0]["start"]
        if turns and turns[-1].cut is None and t < turns[-1].a_end:
            cut = t + rng.randint(*stop_after)  # barge-in: the model stops a few frames after the user starts
            if cut < turns[-1].a_end:
                turns[-1].cut = turns[-1].a_end = cut
        ai = rng.choice(answers[pairs[pair][1]])
        aw = a_words[ai]
        a_start = q_end + rng.randint(*gap)
        a0 = a_start - aw[0]["start"]
        turn = Turn(pair, qi, t, q_end, ai, a0, a_start, a0 + aw[-1]["end"])
        turns.append(turn)
        if rng.random() < barge_in:
            t = rng.randint(a_start + 1, max(a_start + 1, turn.a_end - 1))
        else:
            t = turn.a_end + rng.randint(*pause)
    return turns


@torch.no_grad()
def build_dialogues(out: str | os.PathLike, codec, tokenizer, *, split: str = "train", dialogues: int = 1000,
                    frames: int = 500, variants: int = 40, answer_variants: int = 3,
                    num_codebooks: int | None = None, seed: int = 0, batch_size: int = 16,
                    write_wavs: bool = False, progress: bool = True, codec_name: str = "default") -> Path:
    """Make ``out/bank.safetensors`` for ``split`` (see the module docstring). ``write_wavs`` also
    writes each dialogue's user audio to ``out/wav/`` and its script to ``out/dialogues.jsonl``
    (for evaluation through the real streaming path)."""
    from safetensors.torch import save_file
    from tqdm import tqdm

    from ..data.corpus import PROSODY
    from ..fileio import atomic_write
    from .data import word_pieces

    q = num_codebooks or codec.num_codebooks
    sr, hop, fr = codec.sample_rate, codec.hop_length, codec.frame_rate
    rng = random.Random(f"tokenlm-duplex:{seed}:{split}")
    voices = _voices(split)
    pairs = qa_pairs()

    def on_frames(words, shift=0):
        return [{"word": w["word"].lower(), "start": int(math.floor(w["start"] * fr + 1e-6)) + shift,
                 "end": int(math.ceil(w["end"] * fr - 1e-6)) + shift, "pieces": word_pieces(tokenizer, w["word"])}
                for w in words]

    # the user's questions: waveforms (placed in dialogues), word times in frames from the clip start
    q_wavs, q_words, q_meta, questions = [], [], [], {}
    jobs = [(pi, text) for pi, (text, _) in enumerate(pairs) for _ in range(variants)]
    for pi, text in tqdm(jobs, desc=f"questions ({split})", disable=not progress, dynamic_ncols=True):
        for _attempt in range(5):
            engine, voice = rng.choice(voices)
            r = PROSODY[engine]
            try:
                wav, words = _speak(text, engine, voice, rng.uniform(*r["rate"]), rng.uniform(*r["pitch"]),
                                    rng.getrandbits(31))
                break
            except TokenLMError:
                continue
        else:
            raise TokenLMError(f"no {split} voice could speak {text!r}")
        questions.setdefault(pi, []).append(len(q_wavs))
        q_wavs.append(wav)
        q_words.append(on_frames(words))
        q_meta.append({"pair": pi, "engine": engine, "voice": voice})
    # the model's answers: codes of each clip (lead silence, speech, trail silence)
    lead_frames, drop = 8, 4  # the first frames show the codec starting from nothing: dropped
    a_codes, a_words, answers, a_text = [], [], {}, []
    texts = sorted({a for _, a in pairs})
    for text in texts:
        for v in range(answer_variants):
            rate = 1.0 if answer_variants == 1 else 0.92 + 0.16 * v / (answer_variants - 1)
            wav, words = _speak(text, MODEL_VOICE[0], MODEL_VOICE[1], rate, 1.0, 0)
            x = torch.nn.functional.pad(wav, (lead_frames * hop, lead_frames * hop + (-wav.shape[0]) % hop))
            c = codec.encode(x[None, None], num_codebooks=q)[0, :, drop:]
            answers.setdefault(text, []).append(len(a_codes))
            a_codes.append(c)
            a_words.append(on_frames(words, lead_frames - drop))
            a_text.append(text)
    # scripts, then the user's side rendered and encoded continuously
    scripts = [plan_dialogue(rng, frames, questions, q_words, answers, a_words, pairs) for _ in range(dialogues)]
    user_codes = []
    out = Path(out)
    (out / "wav").mkdir(parents=True, exist_ok=True) if write_wavs else out.mkdir(parents=True, exist_ok=True)
    for i in tqdm(range(0, dialogues, batch_size), desc=f"dialogues ({split})", disable=not progress,
                  dynamic_ncols=True):
        batch = []
        for j in range(i, min(i + batch_size, dialogues)):
            x = torch.zeros(frames * hop)
            if rng.random() < 0.7:  # a faint noise floor, as a microphone has
                x += torch.randn(frames * hop, generator=torch.Generator().manual_seed(seed * 100003 + j)) \
                    * 10 ** (rng.uniform(-80, -50) / 20)
            for turn in scripts[j]:
                w, qw = q_wavs[turn.question], q_words[turn.question]
                s0 = turn.q_start * hop - int(qw[0]["start"] * hop) + rng.randrange(hop // 2)
                a, z = max(0, s0), min(x.shape[0], s0 + w.shape[0])
                if a < z:
                    x[a:z] += w[a - s0: z - s0] * 10 ** (rng.uniform(-8, 6) / 20)
            x = x.clamp(-1, 1)
            batch.append(x)
            if write_wavs:
                from ..audio import save_audio

                save_audio(out / "wav" / f"{split}-{j:05d}.wav", x[None], sr)
        user_codes.append(codec.encode(torch.stack(batch)[:, None], num_codebooks=q))
    user = torch.cat(user_codes)  # [N, Q, F]
    offsets = torch.tensor([0] + [c.shape[1] for c in a_codes]).cumsum(0)
    silence = codec.encode(torch.zeros(1, 1, hop * 12), num_codebooks=q)[0, :, drop:]
    header = {"format": "tokenlm-duplex-bank", "version": 1, "split": split, "codec": codec.token_fingerprint,
              "codec_name": codec_name,
              "tokenizer": tokenizer.digest, "text_card": tokenizer.vocab_size, "frame_rate": fr,
              "num_codebooks": q, "codebook_size": codec.codebook_size, "pairs": pairs,
              "model_voice": "/".join(MODEL_VOICE), "answers": [{"text": t, "words": w} for t, w in zip(a_text, a_words)],
              "questions": q_meta, "scripts": [[t.to_dict() for t in s] for s in scripts]}
    tensors = {"user": user.to(torch.int16).contiguous(), "answers": torch.cat(a_codes, 1).to(torch.int16).contiguous(),
               "offsets": offsets.contiguous(), "silence": silence[:, -1].to(torch.int16).contiguous()}
    path = out / "bank.safetensors"
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"tokenlm": json.dumps(header)}))
    if write_wavs:
        rows = []
        for j, sc in enumerate(scripts):
            rows.append({"id": f"{split}-{j:05d}", "audio": f"wav/{split}-{j:05d}.wav", "turns": [
                {"question": pairs[t.pair][0], "answer": pairs[t.pair][1], "q_start": t.q_start / fr,
                 "q_end": t.q_end / fr, "interrupted": t.cut is not None,
                 "voice": "/".join(q_meta[t.question][k] for k in ("engine", "voice"))}
                for t in sc if t.q_end < frames]})
        atomic_write(out / "dialogues.jsonl", lambda tmp: Path(tmp).write_text(
            "".join(json.dumps(r) + "\n" for r in rows)))
    return path


class DialogueBank:
    """A dialogue bank in memory (see :func:`build_dialogues`)."""

    def __init__(self, folder: str | os.PathLike):
        from safetensors import safe_open

        path = Path(folder)
        path = path / "bank.safetensors" if path.is_dir() else path
        if not path.exists():
            raise TokenLMError(f"{folder}: no duplex dialogue bank (bank.safetensors); "
                               "run recipes/build_duplex_data.py")
        try:
            with safe_open(str(path), "pt") as f:
                self.header = json.loads((f.metadata() or {}).get("tokenlm", "{}"))
                t = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:
            raise TokenLMError(f"{path}: not a readable duplex dialogue bank ({e})") from None
        if self.header.get("format") != "tokenlm-duplex-bank":
            raise TokenLMError(f"{path}: not a tokenlm duplex dialogue bank")
        self.user = t["user"].long()  # [N, Q, F]
        off = t["offsets"].tolist()
        a = t["answers"].long()
        self.answer_codes = [a[:, off[i]: off[i + 1]] for i in range(len(off) - 1)]
        self.answer_words = [x["words"] for x in self.header["answers"]]
        self.silence = t["silence"].long()
        self.scripts = [[Turn(**d) for d in s] for s in self.header["scripts"]]
        self.pairs = [tuple(p) for p in self.header["pairs"]]
        self.meta = {k: self.header[k] for k in ("codec", "tokenizer", "frame_rate", "num_codebooks",
                                                  "codebook_size", "text_card")}

    def __len__(self) -> int:
        return self.user.shape[0]


class DialogueSampler:
    """Training windows from a :class:`DialogueBank`: aligned streams ``[K, frames]`` (undelayed)."""

    def __init__(self, bank: DialogueBank, streams: Streams, frames: int = 250):
        self.bank, self.streams, self.frames = bank, streams, frames
        self.q = sum(1 for s in streams if s.name.startswith("audio_"))
        text = streams[streams.index("text")]
        self.pad, self.epad = text.pad_id, text.epad_id

    def dialogue(self, i: int) -> torch.Tensor:
        """The whole dialogue ``i`` as aligned streams ``[K, F]``."""
        b, q = self.bank, self.q
        user = b.user[i, :q]
        f = user.shape[1]
        model = b.silence[:q, None].repeat(1, f)
        text = torch.full((f,), self.pad, dtype=torch.long)
        for turn in b.scripts[i]:
            codes = b.answer_codes[turn.answer][:q]
            end = turn.cut if turn.cut is not None else turn.a0 + codes.shape[1]
            a, z = max(0, turn.a0), min(f, end)
            if a < z:
                model[:, a:z] = codes[:, a - turn.a0: z - turn.a0]
            self._words(text, b.answer_words[turn.answer], turn.a0, turn.cut)
        out = torch.empty(len(self.streams), f, dtype=torch.long)
        for k, s in enumerate(self.streams):
            if s.kind == "text":
                out[k] = text
            else:
                src, qi = (model, int(s.name[6:])) if s.name.startswith("audio_") else (user, int(s.name[3:]))
                out[k] = src[qi]
        return out

    def _words(self, text: torch.Tensor, words: list[dict], offset: int, cut: int | None) -> None:
        limit = text.shape[0] if cut is None else min(cut, text.shape[0])
        cursor = -1
        for w in words:
            first = max(offset + w["start"], cursor + 2)
            if not w["pieces"] or first + len(w["pieces"]) > limit:
                break
            text[first - 1] = self.epad
            text[first: first + len(w["pieces"])] = torch.tensor(w["pieces"])
            cursor = first + len(w["pieces"]) - 1
        else:
            end = max(offset + words[-1]["end"], cursor + 1)
            if end < text.shape[0]:
                text[end] = self.epad  # end of the answer
            return
        if cut is not None and cut < text.shape[0]:
            text[cut] = self.epad  # cut short: the answer ends here

    def sample(self, rng: random.Random) -> torch.Tensor:
        i = rng.randrange(len(self.bank))
        x = self.dialogue(i)
        s = rng.randint(0, max(0, x.shape[1] - self.frames))
        return x[:, s: s + self.frames]

    def batch(self, rng: random.Random, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(delayed [B, K, frames + max_delay], valid)`` for training."""
        return apply_delays(torch.stack([self.sample(rng) for _ in range(batch_size)]), self.streams)
