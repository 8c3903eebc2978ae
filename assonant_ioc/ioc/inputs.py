"""What a setting written to the IOC may hold: checked when it is written, so a bad value is
refused with a reason on LastError instead of failing an experiment at its end."""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: Directories a data directory may never be in: kernel and device file systems, and the
#: system's own trees (a service running as root could write there).
FORBIDDEN_ROOTS = (
    "/proc",
    "/sys",
    "/dev",
    "/etc",
    "/bin",
    "/sbin",
    "/boot",
    "/lib",
    "/lib32",
    "/lib64",
    "/usr",
    "/run",
)


#: Bidirectional formatting characters: they make a name display as another (U+202E).
_BIDI = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}


def control_characters(text: str) -> bool:
    """Any Unicode control character (category Cc: C0, DEL and C1, such as U+0085 and the
    terminal escape introducer U+009B) or bidirectional formatting character."""
    return any(unicodedata.category(c) == "Cc" or c in _BIDI for c in text)


def text_problem(name: str, text: str, max_bytes: int) -> str | None:
    """Why ``text`` cannot be the value of setting ``name``, or None."""
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > max_bytes:
        return f"{name} refused: {size} bytes, at most {max_bytes}"
    if control_characters(text):
        return f"{name} refused: {text[:60]!r} has a control or bidirectional character"
    return None


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def data_dir_problem(text: str, roots: Sequence[str] = (), max_bytes: int = 1023) -> str | None:
    """Why ``text`` cannot be the data directory, or None: absolute, no control characters,
    not in a kernel or device file system, inside one of ``roots`` when they are given, and an
    existing writable directory or one that can be created."""
    shown = text if len(text) <= 120 else text[:117] + "..."
    if len(text.encode()) > max_bytes:
        return f"DataDir refused: {len(text.encode())} bytes, at most {max_bytes}"
    if control_characters(text):
        return f"DataDir refused: {shown!r} has a control or bidirectional character"
    if not os.path.isabs(text):
        return f"DataDir refused: {shown!r} is not an absolute path"
    real = Path(os.path.realpath(text))
    if real == Path("/"):
        return "DataDir refused: '/' is the root directory"
    for bad in FORBIDDEN_ROOTS:
        if _inside(real, Path(bad)):
            return f"DataDir refused: {shown!r} is in {bad}"
    if roots and not any(_inside(real, Path(os.path.realpath(r))) for r in roots):
        return f"DataDir refused: {shown!r} is outside the data roots ({', '.join(roots)})"
    existing = real
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"DataDir refused: {str(existing)!r} is not a directory"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"DataDir refused: {str(existing)!r} is not writable"
    return None


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
