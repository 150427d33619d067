"""SPDY/3.1 framing: what kubectl speaks for `pods/portforward` (draft-mbelshe-httpbis-spdy-00, as moby/spdystream
implements it for client-go and the kubelet).

Hand-written because no maintained Python SPDY library exists (PyPI's are single releases from 2012-2021 or bind a
C library); the part kubectl uses is small: eight control frames, data frames, and header blocks deflated with
one zlib context per direction and SPDY/3's fixed dictionary, each block ending with a sync flush.

A `Codec` is one side of one connection: `feed` takes received bytes and returns the whole frames in them,
`encode` turns a frame into bytes. Both keep zlib state across frames, so one codec per connection, and frames
must be encoded in the order they are sent.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

VERSION: Final = 3
FLAG_FIN: Final = 0x01
FLAG_UNIDIRECTIONAL: Final = 0x02  # SYN_STREAM only

SYN_STREAM: Final = 1
SYN_REPLY: Final = 2
RST_STREAM: Final = 3
SETTINGS: Final = 4
PING: Final = 6
GOAWAY: Final = 7
HEADERS: Final = 8
WINDOW_UPDATE: Final = 9

# RST_STREAM status codes (section 2.4.2) and GOAWAY's.
PROTOCOL_ERROR: Final = 1
INVALID_STREAM: Final = 2
REFUSED_STREAM: Final = 3
CANCEL: Final = 5
INTERNAL_ERROR: Final = 6
STREAM_ALREADY_CLOSED: Final = 9
GOAWAY_OK: Final = 0

MAX_LENGTH: Final = (1 << 24) - 1  # a frame's 24-bit length field
# A header block inflates to at most this; kubectl's are a few dozen bytes.
MAX_HEADER_BLOCK: Final = 256 * 1024

# fmt: off
_WORDS: Final = (
    "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset", "accept-encoding",
    "accept-language", "accept-ranges", "age", "allow", "authorization", "cache-control", "connection",
    "content-base", "content-encoding", "content-language", "content-length", "content-location", "content-md5",
    "content-range", "content-type", "date", "etag", "expect", "expires", "from", "host", "if-match",
    "if-modified-since", "if-none-match", "if-range", "if-unmodified-since", "last-modified", "location",
    "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer", "retry-after",
    "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "vary", "via", "warning",
    "www-authenticate", "method", "get", "status", "200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie",
    "keep-alive", "origin"
)
# fmt: on
_TAIL: Final = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized"
    "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable"
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
    "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)
# SPDY/3's header-compression dictionary (section 2.6.10.1): length-prefixed words, then a run of text. Built
# from its parts rather than pasted as 1423 hex bytes; the tests pin its length and checksum.
DICTIONARY: Final = b"".join(struct.pack(">I", len(w)) + w.encode("ascii") for w in _WORDS) + _TAIL.encode("ascii")

Headers = Mapping[str, Sequence[str]]


class SpdyError(Exception):
    """The peer sent something that is not SPDY/3: the session cannot go on."""


@dataclass(frozen=True)
class DataFrame:
    stream_id: int
    data: bytes = b""
    fin: bool = False


@dataclass(frozen=True)
class SynStream:
    stream_id: int
    headers: Headers = field(default_factory=dict)
    associated_id: int = 0
    priority: int = 0
    fin: bool = False
    unidirectional: bool = False


@dataclass(frozen=True)
class SynReply:
    stream_id: int
    headers: Headers = field(default_factory=dict)
    fin: bool = False


@dataclass(frozen=True)
class RstStream:
    stream_id: int
    status: int


@dataclass(frozen=True)
class Settings:
    entries: Sequence[tuple[int, int, int]] = ()  # (flags, id, value)
    clear: bool = False


@dataclass(frozen=True)
class Ping:
    id: int


@dataclass(frozen=True)
class GoAway:
    last_good_stream_id: int
    status: int = GOAWAY_OK


@dataclass(frozen=True)
class HeadersFrame:
    stream_id: int
    headers: Headers = field(default_factory=dict)
    fin: bool = False


@dataclass(frozen=True)
class WindowUpdate:
    stream_id: int
    delta: int


Frame = DataFrame | SynStream | SynReply | RstStream | Settings | Ping | GoAway | HeadersFrame | WindowUpdate


def header(headers: Headers, name: str) -> str | None:
    """The first value of a header; SPDY header names are lowercase on the wire."""
    values = headers.get(name.lower())
    return values[0] if values else None


class Codec:
    """Frames to bytes and back for one side of one SPDY/3 connection."""

    def __init__(self) -> None:
        # Go's framer deflates at BestCompression; any level inflates the same.
        self._deflate = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS, zdict=DICTIONARY)
        self._inflate = zlib.decompressobj(zlib.MAX_WBITS, zdict=DICTIONARY)
        self._buffer = bytearray()

    # -- reading ---------------------------------------------------------------------------------------------

    def feed(self, data: bytes) -> list[Frame]:
        """The whole frames completed by `data` (a partial frame waits for the next feed)."""
        self._buffer += data
        frames: list[Frame] = []
        while len(self._buffer) >= 8:
            length = int.from_bytes(self._buffer[5:8], "big")
            if len(self._buffer) < 8 + length:
                break
            head = bytes(self._buffer[:8])
            payload = bytes(self._buffer[8 : 8 + length])
            del self._buffer[: 8 + length]
            frame = self._decode(head, payload)
            if frame is not None:
                frames.append(frame)
        return frames

    def _decode(self, head: bytes, payload: bytes) -> Frame | None:
        first, flags = int.from_bytes(head[:4], "big"), head[4]
        if not first & 0x80000000:
            stream_id = first & 0x7FFFFFFF
            if stream_id == 0:
                raise SpdyError("data frame on stream 0")
            return DataFrame(stream_id, payload, bool(flags & FLAG_FIN))
        version, kind = (first >> 16) & 0x7FFF, first & 0xFFFF
        if version != VERSION:
            raise SpdyError(f"unsupported SPDY version {version}")
        try:
            return self._control(kind, flags, payload)
        except (struct.error, IndexError) as exc:
            raise SpdyError(f"malformed control frame of type {kind}: {exc}") from exc

    def _control(self, kind: int, flags: int, payload: bytes) -> Frame | None:
        fin = bool(flags & FLAG_FIN)
        if kind == SYN_STREAM:
            stream_id, associated, priority = struct.unpack_from(">IIB", payload)
            return SynStream(
                _stream(stream_id),
                self._headers(payload[10:]),
                associated & 0x7FFFFFFF,
                priority >> 5,
                fin,
                bool(flags & FLAG_UNIDIRECTIONAL),
            )
        if kind in (SYN_REPLY, HEADERS):
            (stream_id,) = struct.unpack_from(">I", payload)
            cls = SynReply if kind == SYN_REPLY else HeadersFrame
            return cls(_stream(stream_id), self._headers(payload[4:]), fin)
        if kind == RST_STREAM:
            stream_id, status = struct.unpack_from(">II", payload)
            return RstStream(_stream(stream_id), status)
        if kind == SETTINGS:
            (count,) = struct.unpack_from(">I", payload)
            entries = []
            for index in range(count):
                flag_id, value = struct.unpack_from(">II", payload, 4 + 8 * index)
                entries.append((flag_id >> 24, flag_id & 0xFFFFFF, value))
            return Settings(tuple(entries), fin)
        if kind == PING:
            (ping_id,) = struct.unpack_from(">I", payload)
            return Ping(ping_id)
        if kind == GOAWAY:
            last, status = struct.unpack_from(">II", payload)
            return GoAway(last & 0x7FFFFFFF, status)
        if kind == WINDOW_UPDATE:
            stream_id, delta = struct.unpack_from(">II", payload)
            return WindowUpdate(stream_id & 0x7FFFFFFF, delta & 0x7FFFFFFF)
        return None  # section 2.2.1: unknown control frames are ignored

    def _headers(self, block: bytes) -> dict[str, tuple[str, ...]]:
        try:
            raw = self._inflate.decompress(block, MAX_HEADER_BLOCK)
        except zlib.error as exc:
            raise SpdyError(f"bad header block: {exc}") from exc
        if self._inflate.unconsumed_tail:
            raise SpdyError("header block too large")
        try:
            (count,) = struct.unpack_from(">I", raw)
            offset, headers = 4, {}
            for _ in range(count):
                (size,) = struct.unpack_from(">I", raw, offset)
                name = raw[offset + 4 : offset + 4 + size].decode("utf-8").lower()
                offset += 4 + size
                (size,) = struct.unpack_from(">I", raw, offset)
                value = raw[offset + 4 : offset + 4 + size].decode("utf-8")
                offset += 4 + size
                headers[name] = tuple(value.split("\x00"))
        except (struct.error, UnicodeDecodeError) as exc:
            raise SpdyError(f"malformed header block: {exc}") from exc
        return headers

    # -- writing ---------------------------------------------------------------------------------------------

    def encode(self, frame: Frame) -> bytes:
        if isinstance(frame, DataFrame):
            if not 0 < frame.stream_id < 1 << 31 or len(frame.data) > MAX_LENGTH:
                raise ValueError(f"invalid data frame for stream {frame.stream_id}")
            return struct.pack(">II", frame.stream_id, (FLAG_FIN if frame.fin else 0) << 24 | len(frame.data)) + (
                frame.data
            )
        if isinstance(frame, SynStream):
            flags = (FLAG_FIN if frame.fin else 0) | (FLAG_UNIDIRECTIONAL if frame.unidirectional else 0)
            body = struct.pack(">IIBB", frame.stream_id, frame.associated_id, (frame.priority & 7) << 5, 0)
            return _control(SYN_STREAM, flags, body + self._header_block(frame.headers))
        if isinstance(frame, SynReply | HeadersFrame):
            kind = SYN_REPLY if isinstance(frame, SynReply) else HEADERS
            body = struct.pack(">I", frame.stream_id) + self._header_block(frame.headers)
            return _control(kind, FLAG_FIN if frame.fin else 0, body)
        if isinstance(frame, RstStream):
            return _control(RST_STREAM, 0, struct.pack(">II", frame.stream_id, frame.status))
        if isinstance(frame, Settings):
            body = struct.pack(">I", len(frame.entries)) + b"".join(
                struct.pack(">II", flags << 24 | ident, value) for flags, ident, value in frame.entries
            )
            return _control(SETTINGS, 1 if frame.clear else 0, body)
        if isinstance(frame, Ping):
            return _control(PING, 0, struct.pack(">I", frame.id))
        if isinstance(frame, GoAway):
            return _control(GOAWAY, 0, struct.pack(">II", frame.last_good_stream_id, frame.status))
        return _control(WINDOW_UPDATE, 0, struct.pack(">II", frame.stream_id, frame.delta))

    def _header_block(self, headers: Headers) -> bytes:
        raw = bytearray(struct.pack(">I", len(headers)))
        for name, values in headers.items():
            key = name.lower().encode("utf-8")
            value = "\x00".join(values).encode("utf-8")
            raw += struct.pack(">I", len(key)) + key + struct.pack(">I", len(value)) + value
        # A sync flush ends every block on a byte boundary, so the peer can inflate it on its own.
        return self._deflate.compress(bytes(raw)) + self._deflate.flush(zlib.Z_SYNC_FLUSH)


def _stream(word: int) -> int:
    stream_id = word & 0x7FFFFFFF
    if stream_id == 0:
        raise SpdyError("stream id 0")
    return stream_id


def _control(kind: int, flags: int, body: bytes) -> bytes:
    return struct.pack(">HHI", 0x8000 | VERSION, kind, flags << 24 | len(body)) + body
