"""The SPDY/3.1 codec: frames survive a round trip, header blocks share one zlib context per direction, and
partial or malformed input is handled. Against real clients it is exercised by test_portforward.py."""

from __future__ import annotations

import struct
import zlib

import pytest

from kalab.lab.apiserver import spdy

# A SYN_STREAM as client-go writes it for a port forward's error stream: Go's framer deflates at level 9 with
# the SPDY/3 dictionary, header names lowercased (bytes built independently of the codec, with zlib directly).
_HEADERS = [("port", "9650"), ("requestid", "0"), ("streamtype", "error")]


def _go_style_syn_stream(stream_id: int) -> bytes:
    block = struct.pack(">I", len(_HEADERS)) + b"".join(
        struct.pack(">I", len(k)) + k.encode() + struct.pack(">I", len(v)) + v.encode() for k, v in _HEADERS
    )
    deflate = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS, zdict=spdy.DICTIONARY)
    compressed = deflate.compress(block) + deflate.flush(zlib.Z_SYNC_FLUSH)
    body = struct.pack(">IIBB", stream_id, 0, 0, 0) + compressed
    return struct.pack(">HHI", 0x8003, 1, len(body)) + body


def test_dictionary_is_spdy3s() -> None:
    # Length from the SPDY/3 draft; the Adler-32 is what a zlib stream names it by (FDICT), so a peer using the
    # real dictionary accepts our header blocks only if these match.
    assert len(spdy.DICTIONARY) == 1423
    assert zlib.adler32(spdy.DICTIONARY) == 0xE3C6A7C2
    assert spdy.DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert spdy.DICTIONARY.endswith(b"charset=iso-8859-1,utf-,*,enq=0.")


def test_decodes_a_syn_stream_written_elsewhere() -> None:
    frames = spdy.Codec().feed(_go_style_syn_stream(1))
    assert frames == [spdy.SynStream(1, {"port": ("9650",), "requestid": ("0",), "streamtype": ("error",)})]
    assert spdy.header(frames[0].headers, "streamType") == "error"  # type: ignore[union-attr]


ALL_FRAMES: list[spdy.Frame] = [
    spdy.SynStream(1, {"streamtype": ("data",), "port": ("80",)}, associated_id=0, priority=3),
    spdy.SynStream(3, {"a": ("1", "2")}, fin=True, unidirectional=True),
    spdy.SynReply(1, {}),
    spdy.SynReply(3, {"x-multi": ("a", "b")}, fin=True),
    spdy.HeadersFrame(5, {"k": ("v",)}),
    spdy.DataFrame(1, b"hello"),
    spdy.DataFrame(1, b"", fin=True),
    spdy.DataFrame(0x7FFFFFFF, b"\x00" * 70000),
    spdy.RstStream(7, spdy.CANCEL),
    spdy.Settings(((0, 7, 65536), (1, 4, 100))),
    spdy.Ping(1),
    spdy.GoAway(9, spdy.GOAWAY_OK),
    spdy.WindowUpdate(1, 1024),
]


def test_every_frame_round_trips_through_one_session() -> None:
    sender, receiver = spdy.Codec(), spdy.Codec()
    wire = b"".join(sender.encode(frame) for frame in ALL_FRAMES)
    assert receiver.feed(wire) == ALL_FRAMES


def test_frames_split_anywhere_arrive_whole() -> None:
    sender, receiver = spdy.Codec(), spdy.Codec()
    wire = b"".join(sender.encode(frame) for frame in ALL_FRAMES[:6])
    got: list[spdy.Frame] = []
    for index in range(0, len(wire), 3):
        got += receiver.feed(wire[index : index + 3])
    assert got == ALL_FRAMES[:6]


def test_header_blocks_depend_on_the_sessions_earlier_blocks() -> None:
    sender = spdy.Codec()
    first = sender.encode(spdy.SynStream(1, {"port": ("9650",)}))
    second = sender.encode(spdy.SynStream(3, {"port": ("9650",)}))
    # The second block refers back into the first: only a codec that saw the first can read it.
    with pytest.raises(spdy.SpdyError):
        spdy.Codec().feed(second)
    receiver = spdy.Codec()
    assert receiver.feed(first + second) == [
        spdy.SynStream(1, {"port": ("9650",)}),
        spdy.SynStream(3, {"port": ("9650",)}),
    ]


def test_wire_layout_of_data_and_control_frames() -> None:
    codec = spdy.Codec()
    assert codec.encode(spdy.DataFrame(3, b"ab", fin=True)) == b"\x00\x00\x00\x03\x01\x00\x00\x02ab"
    assert codec.encode(spdy.Ping(5)) == b"\x80\x03\x00\x06\x00\x00\x00\x04\x00\x00\x00\x05"
    assert codec.encode(spdy.RstStream(1, 5)) == b"\x80\x03\x00\x03\x00\x00\x00\x08\x00\x00\x00\x01\x00\x00\x00\x05"


def test_unknown_control_frames_are_skipped() -> None:
    unknown = struct.pack(">HHI", 0x8003, 0x00FF, 4) + b"abcd"
    assert spdy.Codec().feed(unknown + spdy.Codec().encode(spdy.Ping(1))) == [spdy.Ping(1)]


@pytest.mark.parametrize(
    "wire",
    [
        struct.pack(">HHI", 0x8002, 6, 4) + b"\x00\x00\x00\x01",  # SPDY/2
        struct.pack(">II", 0, 1) + b"x",  # data on stream 0
        struct.pack(">HHI", 0x8003, 1, 10) + struct.pack(">IIBB", 1, 0, 0, 0),  # no header block at all
        struct.pack(">HHI", 0x8003, 6, 2) + b"\x00\x01",  # truncated PING
        struct.pack(">HHI", 0x8003, 2, 8) + struct.pack(">I", 1) + b"junk",  # header block that is not zlib
    ],
)
def test_malformed_input_is_a_protocol_error(wire: bytes) -> None:
    with pytest.raises(spdy.SpdyError):
        spdy.Codec().feed(wire)
