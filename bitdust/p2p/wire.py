"""What travels inside a p2p session: the handshake payload and the msgpack frames.

Every byte decoded here comes from a peer. Sizes are checked before msgpack parses anything, then
every field's type, length and count; any problem is one :class:`MalformedFrame`, which closes the
session. The record layer (length prefix, Noise encryption) is the session's business, not this
module's: these functions see plaintext only.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import msgpack

#: Our wire version; it is in the Noise prologue, so both sides must speak the same one. Version 2
#: carries a stream's data in records of their own after a STREAM_DATA frame (1 framed each chunk).
WIRE_VERSION = 2
NOISE_PROTOCOL = b"Noise_XX_25519_AESGCM_SHA256"
PROLOGUE = b"bitdust-p2p/" + str(WIRE_VERSION).encode() + b"\x00" + NOISE_PROTOCOL
#: libp2p's identity binding: the identity key signs this label followed by the static key.
STATIC_KEY_LABEL = b"bitdust-p2p-static-key:"

#: A Noise message is at most 65,535 bytes, 16 of which are the AEAD tag.
MAX_NOISE_MESSAGE = 65535
TAG_SIZE = 16
MAX_PLAINTEXT = MAX_NOISE_MESSAGE - TAG_SIZE
#: What one frame may carry: a request, response or event payload, or a stream's header.
MAX_PAYLOAD = MAX_PLAINTEXT - 512
MAX_KIND = 64
MAX_REASON = 200
MAX_HANDSHAKE_PAYLOAD = 2048
MAX_IDURL = 256
MAX_SIGNATURE = 1024  # an RSA-4096 signature is 512 bytes
MAX_ID = 2**63 - 1


class MalformedFrame(ValueError):
    """Plaintext that is not a well-formed payload or frame of this wire version."""


class FrameType(enum.IntEnum):
    REQUEST = 1  # id, kind, payload
    RESPONSE = 2  # id, payload
    REQUEST_ERROR = 3  # id, reason
    EVENT = 4  # kind, payload
    STREAM_OPEN = 5  # stream, kind, header
    STREAM_DATA = 6  # stream, size: the next records are ``size`` bytes of the stream's data
    STREAM_END = 7  # stream: the sender wrote everything
    STREAM_RESET = 8  # stream, reason: the sender gave up
    STREAM_CREDIT = 9  # stream, limit: the receiver lets the sender reach offset ``limit``
    STREAM_CLOSE = 10  # stream, reason: the receiver is done ("" = read it all) and frees the slot
    CLOSE = 11  # reason: the sender ends the session


# The fields of each frame, after the type: (name, checker). One table for encode and decode.
def _uint(value: Any) -> int:
    if type(value) is not int or not 0 <= value <= MAX_ID:
        raise MalformedFrame("expected an unsigned integer")
    return value


def _size(value: Any) -> int:
    if not _uint(value):
        raise MalformedFrame("expected a positive integer")
    return value


def _kind(value: Any) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_KIND:
        raise MalformedFrame(f"expected a message kind of 1-{MAX_KIND} characters")
    return value


def _blob(value: Any) -> bytes:
    if not isinstance(value, bytes) or len(value) > MAX_PAYLOAD:
        raise MalformedFrame(f"expected at most {MAX_PAYLOAD} bytes")
    return value


def _reason(value: Any) -> str:
    if not isinstance(value, str) or len(value) > MAX_REASON:
        raise MalformedFrame(f"expected a reason of at most {MAX_REASON} characters")
    return value


_FIELDS: dict[FrameType, tuple[tuple[str, Any], ...]] = {
    FrameType.REQUEST: (("ident", _uint), ("kind", _kind), ("data", _blob)),
    FrameType.RESPONSE: (("ident", _uint), ("data", _blob)),
    FrameType.REQUEST_ERROR: (("ident", _uint), ("reason", _reason)),
    FrameType.EVENT: (("kind", _kind), ("data", _blob)),
    FrameType.STREAM_OPEN: (("ident", _uint), ("kind", _kind), ("data", _blob)),
    FrameType.STREAM_DATA: (("ident", _uint), ("size", _size)),
    FrameType.STREAM_END: (("ident", _uint),),
    FrameType.STREAM_RESET: (("ident", _uint), ("reason", _reason)),
    FrameType.STREAM_CREDIT: (("ident", _uint), ("limit", _uint)),
    FrameType.STREAM_CLOSE: (("ident", _uint), ("reason", _reason)),
    FrameType.CLOSE: (("reason", _reason),),
}


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame; only the fields of its ``type`` mean anything.

    ``ident`` is the request or stream id, ``limit`` a credit offset, ``size`` how many bytes of
    a stream's data follow in records of their own, ``data`` a payload or a stream's header."""

    type: FrameType
    ident: int = 0
    kind: str = ""
    data: bytes = b""
    reason: str = ""
    limit: int = 0
    size: int = 0


def encode_frame(frame: Frame) -> bytes:
    """A frame's plaintext; ValueError when it would not fit one Noise message (a local bug)."""
    fields = [int(frame.type)] + [getattr(frame, name) for name, _ in _FIELDS[frame.type]]
    data = msgpack.packb(fields, use_bin_type=True)
    if len(data) > MAX_PLAINTEXT:
        raise ValueError(f"{frame.type.name} frame of {len(data)} bytes exceeds {MAX_PLAINTEXT}")
    return data


def _unpack(data: bytes, limit: int, max_items: int) -> Any:
    if not isinstance(data, bytes | bytearray | memoryview) or not 0 < len(data) <= limit:
        raise MalformedFrame("size out of bounds")
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_str_len=limit,
            max_bin_len=limit,
            max_array_len=max_items,
            max_map_len=max_items,
            max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises several unrelated types on bad input
        raise MalformedFrame(f"not msgpack: {type(exc).__name__}") from None


def decode_frame(data: bytes) -> Frame:
    """Parse and check one frame's plaintext; raises :class:`MalformedFrame` and nothing else."""
    items = _unpack(data, MAX_PLAINTEXT, 4)
    if not isinstance(items, list) or not items:
        raise MalformedFrame("a frame is a non-empty array")
    raw_type = items[0]
    if type(raw_type) is not int or raw_type not in FrameType._value2member_map_:
        raise MalformedFrame("unknown frame type")
    kind = FrameType(raw_type)
    fields = _FIELDS[kind]
    if len(items) != 1 + len(fields):
        raise MalformedFrame(f"{kind.name}: expected {len(fields)} fields")
    values = {}
    for (name, check), value in zip(fields, items[1:], strict=True):
        try:
            values[name] = check(value)
        except MalformedFrame as exc:
            raise MalformedFrame(f"{kind.name} {name}: {exc}") from None
    return Frame(kind, **values)


@dataclass(frozen=True, slots=True)
class HandshakePayload:
    """What each side tells the other inside the Noise handshake: who it is and the proof that
    its identity key owns the Noise static key."""

    idurl: str
    revision: int
    signature: bytes


def encode_handshake_payload(payload: HandshakePayload) -> bytes:
    return msgpack.packb(
        {"v": WIRE_VERSION, "u": payload.idurl, "r": payload.revision, "s": payload.signature},
        use_bin_type=True,
    )


def decode_handshake_payload(data: bytes) -> HandshakePayload:
    """Parse a peer's handshake payload; raises :class:`MalformedFrame` and nothing else."""
    obj = _unpack(data, MAX_HANDSHAKE_PAYLOAD, 4)
    if not isinstance(obj, dict) or set(obj) != {"v", "u", "r", "s"}:
        raise MalformedFrame("handshake payload: expected a map of v, u, r, s")
    if type(obj["v"]) is not int or obj["v"] != WIRE_VERSION:
        raise MalformedFrame("handshake payload: unsupported wire version")
    idurl, revision, signature = obj["u"], obj["r"], obj["s"]
    if not isinstance(idurl, str) or not 0 < len(idurl) <= MAX_IDURL:
        raise MalformedFrame("handshake payload: bad IDURL")
    if type(revision) is not int or not 1 <= revision <= MAX_ID:
        raise MalformedFrame("handshake payload: bad revision")
    if not isinstance(signature, bytes) or not 0 < len(signature) <= MAX_SIGNATURE:
        raise MalformedFrame("handshake payload: bad signature")
    return HandshakePayload(idurl, revision, signature)
