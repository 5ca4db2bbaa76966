import json
import struct

import numpy as np
import pytest
import torch

from tokenlm.errors import TokenLMError
from tokenlm.server import protocol as P


def test_json_kinds_round_trip():
    hs = {"protocol": "tokenlm", "version": 1, "mode": "asr"}
    m = P.parse(P.pack_handshake(hs))
    assert (m.kind, m.name, m.data) == (P.HANDSHAKE, "handshake", hs)
    m = P.parse(P.pack_text(7, [{"word": "héllo", "start": 0.1, "end": 0.3}]))
    assert m.kind == P.TEXT and m.data == {"frame": 7, "words": [{"word": "héllo", "start": 0.1, "end": 0.3}]}
    assert P.parse(P.pack_say("say this")).data == {"text": "say this"}
    assert P.parse(P.pack_control({"event": "frame", "frame": 3, "seq": 2})).data["seq"] == 2
    m = P.parse(P.pack_error("line one\n  line two", fatal=True))
    assert m.kind == P.ERROR and m.data == {"error": "line one line two", "fatal": True}


def test_text_words_from_objects():
    class W:
        def to_dict(self):
            return {"word": "a", "start": 0.0, "end": 0.04}

    assert P.parse(P.pack_text(0, [W()])).data["words"] == [{"word": "a", "start": 0.0, "end": 0.04}]


def test_audio_round_trip_and_layout():
    pcm = np.array([0, 1, -1, 32767, -32768], dtype=np.int16)
    data = P.pack_audio(2**32 - 1, pcm)
    assert data[0] == 1 and struct.unpack("<I", data[1:5])[0] == 2**32 - 1
    assert data[5:] == pcm.astype("<i2").tobytes()
    m = P.parse(data)
    assert m.kind == P.AUDIO and m.number == 2**32 - 1 and m.pcm.dtype == np.int16
    np.testing.assert_array_equal(m.pcm, pcm)
    empty = P.parse(P.pack_audio(0, np.zeros(0, np.int16)))
    assert empty.number == 0 and empty.pcm.size == 0


def test_audio_from_floats_and_tensors():
    x = torch.tensor([0.0, 0.5, -0.5, 2.0, -2.0, float("nan")])
    m = P.parse(P.pack_audio(1, x))
    np.testing.assert_array_equal(m.pcm, [0, 16384, -16384, 32767, -32768, 0])
    back = P.to_float32(m.pcm)
    assert back.dtype == np.float32 and abs(back[1] - 0.5) < 1e-4
    with pytest.raises(ValueError):
        P.pack_audio(-1, x)


@pytest.mark.parametrize("data, words", [
    (b"", "empty message"),
    (b"\x07{}", "unknown message kind 0x07"),
    (b"\x00{not json", "not valid JSON"),
    (b"\x00\xff\xfe", "not valid UTF-8"),
    (b"\x03[1, 2]", "must be a JSON object"),
    (b"\x01\x00\x00", "audio message too short"),
    (b"\x01\x00\x00\x00\x00\x01\x02\x03", "odd number of PCM bytes"),
    (b"\x01" + bytes(P.MAX_MESSAGE_BYTES + 4), "message too large"),
])
def test_malformed_messages(data, words):
    with pytest.raises(P.ProtocolError, match=words) as e:
        P.parse(data)
    assert not e.value.fatal
    assert isinstance(e.value, TokenLMError)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("obj, words", [
    ({"protocol": "moshi", "version": 1, "mode": "asr"}, "protocol must be 'tokenlm'"),
    ({"protocol": "tokenlm", "version": 2, "mode": "asr"}, "unsupported protocol version 2"),
    ({"protocol": "tokenlm", "mode": "asr"}, "unsupported protocol version None"),
    ({"protocol": "tokenlm", "version": 1, "mode": "music"}, "mode must be one of asr, tts, duplex"),
    ({"protocol": "tokenlm", "version": 1, "mode": "tts"}, "'tts' is not available on this server"),
])
def test_bad_handshakes_are_fatal(obj, words):
    with pytest.raises(P.ProtocolError, match=words) as e:
        P.check_handshake(obj, {"asr": 1, "duplex": 1})
    assert e.value.fatal


def test_good_handshake():
    assert P.check_handshake({"protocol": "tokenlm", "version": 1, "mode": "duplex"}) == "duplex"


def _msg(data: bytes) -> P.Message:
    return P.parse(data)


@pytest.mark.parametrize("data, mode, words", [
    (P.pack_audio(0, np.zeros(4, np.int16)), None, "audio message before the handshake"),
    (P.pack_control({"action": "end"}), None, "control message before the handshake"),
    (P.pack_handshake({"protocol": "tokenlm", "version": 1, "mode": "asr"}), "asr", "handshake already done"),
    (P.pack_say("hello"), "asr", "only accepted in tts mode"),
    (P.pack_say("   "), "tts", "non-empty text"),
    (b"\x02" + json.dumps({"text": 3}).encode(), "tts", "non-empty text"),
    (P.pack_say("a" * (P.MAX_TEXT_CHARS + 1)), "tts", "text too long"),
    (P.pack_audio(0, np.zeros(4, np.int16)), "tts", "send text in tts mode"),
    (P.pack_control({"action": "dance"}), "asr", "action must be one of end, reset, ping"),
    (P.pack_control({"event": "frame"}), "duplex", "action must be one of"),
    (P.pack_error("x"), "asr", "sent by the server only"),
])
def test_out_of_place_client_messages(data, mode, words):
    with pytest.raises(P.ProtocolError, match=words) as e:
        P.check_client_message(_msg(data), mode)
    assert not e.value.fatal


@pytest.mark.parametrize("data, mode", [
    (P.pack_handshake({"protocol": "tokenlm", "version": 1, "mode": "asr"}), None),
    (P.pack_audio(5, np.zeros(640, np.int16)), "asr"),
    (P.pack_audio(5, np.zeros(640, np.int16)), "duplex"),
    (P.pack_say("hello there"), "tts"),
    (P.pack_control({"action": "ping", "t": 1.5}), "tts"),
    (P.pack_control({"action": "end"}), "asr"),
    (P.pack_control({"action": "reset"}), "duplex"),
])
def test_valid_client_messages(data, mode):
    P.check_client_message(_msg(data), mode)
