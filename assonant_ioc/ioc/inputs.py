"""What a setting written to the IOC may hold: checked when it is written, so a bad value is
refused with a reason on LastError instead of failing an experiment at its end."""

from __future__ import annotations

import re
from typing import Any

from assonant_ioc.config.paths import (
    FORBIDDEN_ROOTS,
    control_characters,
    data_dir_problem,
    text_problem,
)

__all__ = [
    "FORBIDDEN_ROOTS",
    "command_problem",
    "control_characters",
    "data_dir_problem",
    "empty_text",
    "plain",
    "raw_text_problem",
    "sent_value",
    "text_problem",
]


def command_problem(name: str, data: Any) -> str | None:
    """Why ``data`` (a write as it came off the wire, in any CA type, before caproto converts
    it to the command's 32-bit integer) is not a command's 0 or 1, or None. caproto would take
    1.5 as 1, wrap 4294967297 to 1, and refuse "1.5" without a reason; the refusal names the
    value as it was sent."""
    values = [data] if isinstance(data, bytes | str) else list(data)
    if len(values) != 1:
        return f"{name} refused: write one value, 0 or 1, not {len(values)} values"
    value = values[0]
    if isinstance(value, bytes):
        value = value.split(b"\0", 1)[0].decode("utf-8", errors="replace")
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        if re.fullmatch(r" *[+-]?[0-9]+ *", value) and int(value) in (0, 1):
            return None
        return f"{name} refused: write 0 or 1, not {shown!r}"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return f"{name} refused: write 0 or 1, not {value!r}"
    if number not in (0.0, 1.0):
        sent: float = int(number) if number.is_integer() else number
        return f"{name} refused: write 0 or 1, not {sent!r}"
    return None


def plain(data: Any, most: int = 8) -> Any:
    """A value off the wire as it was sent, for a message: numbers as Python numbers."""
    if isinstance(data, bytes | str):
        return data[:40]
    items = list(data)[:most]
    return [x.item() if hasattr(x, "item") else x for x in items]


def sent_value(data: Any) -> Any:
    """A write's value as the client sent it, for the audit: a char array as its text (up to
    its first NUL), a single value as itself, an array as a short list."""
    if isinstance(data, bytes | str):
        raw = data.encode() if isinstance(data, str) else data
    else:
        items = plain(data, 64)
        if len(items) == 1 and not isinstance(items[0], bytes):
            return items[0]
        if items and all(isinstance(i, bytes) for i in items):
            raw = items[0]
        elif all(isinstance(i, int) and 0 <= i < 256 for i in items) and len(items) > 1:
            raw = bytes(items)
        else:
            return items
    return raw.split(b"\0", 1)[0].decode("utf-8", errors="replace")


def empty_text(data: Any) -> bool:
    """Whether a text setting's write (as it came off the wire) is the empty text: no bytes,
    only NULs (``caput -S PV ""`` sends one), or an empty DBR_STRING."""
    if isinstance(data, str):
        return data == ""
    items = [data] if isinstance(data, bytes) else list(data)
    if all(isinstance(item, bytes) for item in items):
        return all(not item.strip(b"\0") for item in items)
    try:
        return all(int(item) == 0 for item in items)
    except (TypeError, ValueError):
        return False


def raw_text_problem(name: str, data: Any, data_type: Any = None) -> str | None:
    """Why ``data`` (a text setting's write as it came off the wire, of CA type
    ``data_type``) is not one UTF-8 text, or None: caproto would turn numbers into
    characters (``[300, 65]`` into ",A"), cut a text at a NUL byte without a word, and
    refuse bytes that are not UTF-8 without a reason."""
    if isinstance(data, str):
        return None
    kind = getattr(data_type, "name", "")
    if kind and kind not in ("CHAR", "STRING", "TIME_CHAR", "TIME_STRING"):
        shown = plain(data)
        return f"{name} refused: write text (a string or a char array), not {kind} {shown!r}"
    items = [data] if isinstance(data, bytes) else list(data)
    if items and all(isinstance(item, bytes) for item in items):  # sent as DBR_STRING
        raw = items[0]
    else:
        try:
            raw = bytes(int(item) & 0xFF for item in items)
        except (TypeError, ValueError):
            return None  # caproto says what is wrong with it
    raw = raw.rstrip(b"\0")
    nul = raw.find(b"\0")
    if nul >= 0:
        return f"{name} refused: a NUL byte at {nul} would cut the text there"
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as err:
        return f"{name} refused: not UTF-8 text (byte {err.start}: {raw[err.start]:#04x})"
    return None
