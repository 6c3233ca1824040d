"""The wire envelope: one msgpack map per frame, with a protocol version and a type.

    {"v": 1, "type": "request", ...}

Decoding is bounded before it allocates: the frame size, every string, array and map
length, and the nesting depth. Anything that does not decode into a map of the right
version and shape raises ProtocolError; brokers count it and drop it, never crash on it.
"""

from __future__ import annotations

from typing import Any

import msgpack

from ..exceptions import ProtocolError

__all__ = ["PROTOCOL_VERSION", "SUPPORTED_VERSIONS", "MAX_FRAME", "MAX_DEPTH", "pack", "unpack", "message"]

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = (1,)
MAX_FRAME = 16 * 1024 * 1024  # a worker's reply may be up to 8 MiB of text, plus headroom
MAX_DEPTH = 16
_MAX_ITEMS = 100_000


def message(type_: str, **fields: Any) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "type": type_, **fields}


def pack(msg: dict[str, Any]) -> bytes:
    return msgpack.packb(msg, use_bin_type=True)


def unpack(frame: bytes, *, max_size: int = MAX_FRAME, check_version: bool = True) -> dict[str, Any]:
    """Decode one frame into a message map. Raises ProtocolError with a short reason."""
    if len(frame) > max_size:
        raise ProtocolError(f"frame of {len(frame)} bytes exceeds {max_size}")
    unpacker = msgpack.Unpacker(
        raw=False,
        max_buffer_size=max(max_size, 1),
        max_str_len=max_size,
        max_bin_len=max_size,
        max_array_len=_MAX_ITEMS,
        max_map_len=_MAX_ITEMS,
        max_ext_len=0,
        strict_map_key=True,
        use_list=True,
    )
    try:
        unpacker.feed(frame)
        obj = unpacker.unpack()
    except msgpack.OutOfData:
        raise ProtocolError("truncated msgpack frame") from None
    except (msgpack.StackError, RecursionError):
        raise ProtocolError("frame nests too deeply") from None
    except Exception as exc:  # ExtraData, FormatError, ValueError, UnicodeDecodeError...
        raise ProtocolError(f"frame does not decode: {type(exc).__name__}") from None
    try:
        unpacker.unpack()
    except msgpack.OutOfData:
        pass
    except Exception:
        raise ProtocolError("trailing bytes after the message") from None
    else:
        raise ProtocolError("more than one message in a frame")
    if not isinstance(obj, dict):
        raise ProtocolError("a message must be a map")
    _check_depth(obj)
    version = obj.get("v")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ProtocolError("message has no protocol version")
    if check_version and version not in SUPPORTED_VERSIONS:
        raise ProtocolError(f"protocol version {version} not spoken here (speaks {', '.join(map(str, SUPPORTED_VERSIONS))})")
    if not isinstance(obj.get("type"), str):
        raise ProtocolError("message has no type")
    return obj


def _check_depth(obj: Any) -> None:
    stack = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ProtocolError(f"message nests deeper than {MAX_DEPTH}")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
