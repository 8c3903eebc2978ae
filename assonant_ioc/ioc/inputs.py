"""What a setting written to the IOC may hold: checked when it is written, so a bad value is
refused with a reason on LastError instead of failing an experiment at its end."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

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
