"""What a setting written to the IOC may hold: checked when it is written, so a bad value is
refused with a reason on LastError instead of failing an experiment at its end."""

from __future__ import annotations

import os
import re
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


def control_characters(text: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


def text_problem(name: str, text: str, max_bytes: int) -> str | None:
    """Why ``text`` cannot be the value of setting ``name``, or None."""
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > max_bytes:
        return f"{name} refused: {size} bytes, at most {max_bytes}"
    if control_characters(text):
        return f"{name} refused: {text[:60]!r} has a control character"
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
        return f"DataDir refused: {shown!r} has a control character"
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
    """Why ``data`` (a write as it came off the wire, before caproto converts it to the
    command's integer) is not a command's 0 or 1 (an integer, a whole number, or its text),
    or None. caproto would take 1.5 as 1 and "1.5" as an error without a reason."""
    values = [data] if isinstance(data, bytes | str) else list(data)
    if len(values) != 1:
        return f"{name} refused: write one value, 1 to run the command, not {len(values)} values"
    value = values[0]
    if isinstance(value, bytes):
        value = value.split(b"\0", 1)[0].decode("utf-8", errors="replace")
    if isinstance(value, str):
        if re.fullmatch(r" *[+-]?[0-9]+ *", value):
            return None
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"{name} refused: write the integer 1 to run the command, not {shown!r}"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return f"{name} refused: write the integer 1 to run the command, not {value!r}"
    if not number.is_integer():
        return f"{name} refused: write the integer 1 to run the command, not {number!r}"
    return None


def raw_text_problem(name: str, data: Any) -> str | None:
    """Why ``data`` (a text setting's write as it came off the wire) is not one UTF-8 text,
    or None: caproto would cut it at a NUL byte without a word, and refuse bytes that are
    not UTF-8 without a reason."""
    if isinstance(data, str):
        return None
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
