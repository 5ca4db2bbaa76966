"""The tokenlm streaming protocol: binary websocket messages whose first byte is the kind.

======  ===========  ======================================================================
byte    kind         payload
======  ===========  ======================================================================
0x00    handshake    UTF-8 JSON. Client: ``{"protocol": "tokenlm", "version": 1, "mode": "asr"}``;
                     server: the same plus ``sample_rate``, ``frame_rate``, ``hop_length``,
                     ``session`` and ``modes`` (the modes this server can run).
0x01    audio        ``uint32`` LE number, then ``int16`` LE mono PCM at ``sample_rate``.
                     Client to server: the number is the message's sequence number and the
                     PCM any number of samples. Server to client: the number is the frame
                     index and the PCM that frame's model audio (``hop_length`` samples).
0x02    text         UTF-8 JSON. Server: ``{"frame": i, "words": [{"word", "start", "end"}]}``
                     (times in seconds from the session's start). Client (TTS mode only):
                     ``{"text": "words to speak"}``.
0x03    control      UTF-8 JSON. Client: ``{"action": "end" | "reset" | "ping", ...}``. Server:
                     ``{"event": "frame", "frame": i, "seq": n}`` (frame ``i`` is done; ``n`` is
                     the last audio message it used), ``{"event": "spoken"}`` (TTS: the text
                     has been said), ``{"event": "reset"}``, ``{"event": "pong", ...}``,
                     ``{"event": "done"}`` (after ``end``: everything is out; the server closes).
0x04    error        UTF-8 JSON ``{"error": "one-line message", "fatal": bool}``. After a fatal
                     error the server closes the connection.
======  ===========  ======================================================================

:func:`parse` checks a message and returns a :class:`Message`; anything malformed raises
:class:`ProtocolError`, whose message is what the server sends back. The ``pack_*`` functions
build messages. Only numpy is needed here, so clients can import this module cheaply.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import TokenLMError

__all__ = [
    "PROTOCOL", "VERSION", "MODES", "MAX_MESSAGE_BYTES",
    "HANDSHAKE", "AUDIO", "TEXT", "CONTROL", "ERROR", "KIND_NAMES",
    "ProtocolError", "Message", "parse", "check_handshake", "check_client_message",
    "pack_handshake", "pack_audio", "pack_text", "pack_say", "pack_control", "pack_error",
    "to_int16", "to_float32",
]

PROTOCOL = "tokenlm"
VERSION = 1
MODES = ("asr", "tts", "duplex")
MAX_MESSAGE_BYTES = 1 << 20  # 1 MiB: about 32 s of 16 kHz audio in one message
MAX_TEXT_CHARS = 2000  # TTS text per message

HANDSHAKE, AUDIO, TEXT, CONTROL, ERROR = 0, 1, 2, 3, 4
KIND_NAMES = {HANDSHAKE: "handshake", AUDIO: "audio", TEXT: "text", CONTROL: "control", ERROR: "error"}
CLIENT_ACTIONS = ("end", "reset", "ping")

_U32 = struct.Struct("<I")


class ProtocolError(TokenLMError, ValueError):
    """A malformed or out-of-place message. ``fatal``: the session cannot go on."""

    def __init__(self, message: str, fatal: bool = False):
        super().__init__(message)
        self.fatal = fatal


@dataclass
class Message:
    kind: int
    data: dict | None = None  # handshake, text, control, error
    number: int | None = None  # audio: sequence number (client) or frame index (server)
    pcm: np.ndarray | None = None  # audio: int16 samples

    @property
    def name(self) -> str:
        return KIND_NAMES[self.kind]


# ---- packing ----------------------------------------------------------------------------------


def _json(kind: int, obj: dict) -> bytes:
    return bytes([kind]) + json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def pack_handshake(info: dict) -> bytes:
    return _json(HANDSHAKE, info)


def pack_audio(number: int, pcm) -> bytes:
    """Audio message: ``number`` (sequence number or frame index) and mono PCM (int16, or floats
    in [-1, 1], numpy or torch)."""
    if not 0 <= int(number) < 2**32:
        raise ValueError(f"audio message number must be 0..2**32-1, got {number}")
    return bytes([AUDIO]) + _U32.pack(int(number)) + to_int16(pcm).astype("<i2", copy=False).tobytes()


def pack_text(frame: int, words: list) -> bytes:
    """Server text: ``words`` are dicts or objects with ``to_dict()`` (``word``, ``start``, ``end``)."""
    return _json(TEXT, {"frame": int(frame), "words": [w if isinstance(w, dict) else w.to_dict() for w in words]})


def pack_say(text: str) -> bytes:
    """Client text (TTS mode): words to speak."""
    return _json(TEXT, {"text": text})


def pack_control(obj: dict) -> bytes:
    return _json(CONTROL, obj)


def pack_error(message: str, fatal: bool = False) -> bytes:
    return _json(ERROR, {"error": " ".join(str(message).split()), "fatal": bool(fatal)})


def to_int16(pcm) -> np.ndarray:
    """Mono samples as int16: int16 input passes through, floats are scaled from [-1, 1] and clipped."""
    if hasattr(pcm, "detach"):  # a torch tensor
        pcm = pcm.detach().cpu().numpy()
    a = np.asarray(pcm).reshape(-1)
    if a.dtype == np.int16:
        return a
    if np.issubdtype(a.dtype, np.integer):
        return np.clip(a, -32768, 32767).astype(np.int16)
    a = np.nan_to_num(a.astype(np.float32), nan=0.0, posinf=1.0, neginf=-1.0)
    return np.clip(np.round(a * 32767.0), -32768, 32767).astype(np.int16)


def to_float32(pcm: np.ndarray) -> np.ndarray:
    """int16 samples -> float32 in [-1, 1)."""
    return pcm.astype(np.float32) / 32768.0


# ---- parsing ----------------------------------------------------------------------------------


def parse(data: bytes | bytearray | memoryview) -> Message:
    """Check one binary message (from either side) and split it into kind and payload."""
    data = bytes(data)
    if not data:
        raise ProtocolError("empty message: the first byte must be the message kind (0-4)")
    if len(data) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message too large: {len(data)} bytes (at most {MAX_MESSAGE_BYTES}); "
                            "send audio in smaller pieces")
    kind, body = data[0], data[1:]
    if kind not in KIND_NAMES:
        raise ProtocolError(f"unknown message kind 0x{kind:02x}: expected 0x00 handshake, 0x01 audio, "
                            "0x02 text, 0x03 control or 0x04 error")
    if kind == AUDIO:
        if len(body) < 4:
            raise ProtocolError(f"audio message too short: {len(body)} bytes after the kind byte; "
                                "expected a 4-byte sequence number then int16 samples")
        pcm = body[4:]
        if len(pcm) % 2:
            raise ProtocolError(f"audio message has an odd number of PCM bytes ({len(pcm)}): samples are int16 LE")
        return Message(AUDIO, number=_U32.unpack_from(body)[0], pcm=np.frombuffer(pcm, dtype="<i2").astype(np.int16))
    try:
        obj = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise ProtocolError(f"{KIND_NAMES[kind]} message is not valid UTF-8 JSON") from None
    except json.JSONDecodeError as e:
        raise ProtocolError(f"{KIND_NAMES[kind]} message is not valid JSON ({e.msg} at character {e.pos})") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"{KIND_NAMES[kind]} message must be a JSON object, got {type(obj).__name__}")
    return Message(kind, data=obj)


def check_handshake(obj: dict, available: dict[str, Any] | None = None) -> str:
    """The mode a client's handshake asks for. Wrong protocol or version, an unknown mode or one
    this server cannot run (``available``: mode -> anything, or None to skip that check) is fatal."""
    if obj.get("protocol") != PROTOCOL:
        raise ProtocolError(f"handshake: protocol must be {PROTOCOL!r}, got {obj.get('protocol')!r}", fatal=True)
    version = obj.get("version")
    if version != VERSION:
        raise ProtocolError(f"handshake: unsupported protocol version {version!r}; this server speaks "
                            f"version {VERSION}", fatal=True)
    mode = obj.get("mode")
    if mode not in MODES:
        raise ProtocolError(f"handshake: mode must be one of {', '.join(MODES)}, got {mode!r}", fatal=True)
    if available is not None and mode not in available:
        have = ", ".join(available) or "none"
        raise ProtocolError(f"mode {mode!r} is not available on this server (available: {have})", fatal=True)
    return mode


def check_client_message(msg: Message, mode: str | None) -> None:
    """Check that a parsed client message makes sense for a session in ``mode`` (None: before the
    handshake). Raises a non-fatal :class:`ProtocolError` otherwise."""
    if msg.kind == HANDSHAKE:
        if mode is not None:
            raise ProtocolError(f"handshake already done (mode {mode}); reconnect to change mode")
        return
    if mode is None:
        raise ProtocolError(f"{msg.name} message before the handshake: send a handshake (0x00) first")
    if msg.kind == AUDIO:
        if mode == "tts":
            raise ProtocolError("audio messages are for asr and duplex sessions; send text in tts mode")
    elif msg.kind == TEXT:
        if mode != "tts":
            raise ProtocolError(f"text messages are only accepted in tts mode (this session is {mode})")
        text = msg.data.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ProtocolError('text message must be {"text": "some words"} with non-empty text')
        if len(text) > MAX_TEXT_CHARS:
            raise ProtocolError(f"text too long: {len(text)} characters (at most {MAX_TEXT_CHARS} per message)")
    elif msg.kind == CONTROL:
        action = msg.data.get("action")
        if action not in CLIENT_ACTIONS:
            raise ProtocolError(f"control message: action must be one of {', '.join(CLIENT_ACTIONS)}, "
                                f"got {action!r}")
    elif msg.kind == ERROR:
        raise ProtocolError("error messages are sent by the server only")
