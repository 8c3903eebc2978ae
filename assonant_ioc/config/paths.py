"""Where files may go: a data directory is checked when it is written and again, on its
resolved path, right before a file is created there (a symbolic link may have moved)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from assonant_ioc.trust import control_characters

__all__ = ["FORBIDDEN_ROOTS", "control_characters", "data_dir_problem", "text_problem"]

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
    not in a kernel or device file system or a system tree, inside one of ``roots`` when they
    are given (each judged on the path as written and as resolved, symbolic links followed:
    ``/proc/self/cwd`` is in /proc, a link into /run is in /run), and an existing writable
    directory or one that can be created."""
    shown = text if len(text) <= 120 else text[:117] + "..."
    if len(text.encode()) > max_bytes:
        return f"DataDir refused: {len(text.encode())} bytes, at most {max_bytes}"
    if control_characters(text):
        return f"DataDir refused: {shown!r} has a control or bidirectional character"
    if not os.path.isabs(text):
        return f"DataDir refused: {shown!r} is not an absolute path"
    written = Path(os.path.normpath(text))
    real = Path(os.path.realpath(text))
    for path, how in ((written, ""), (real, f" (it resolves to {str(real)!r})")):
        if path == Path("/"):
            return f"DataDir refused: {shown!r} is the root directory{how}"
        for bad in FORBIDDEN_ROOTS:
            if _inside(path, Path(bad)):
                return f"DataDir refused: {shown!r} is in {bad}{how}"
        if roots and not any(_inside(path, Path(os.path.realpath(r))) for r in roots):
            if not any(_inside(path, Path(os.path.normpath(r))) for r in roots):
                joined = ", ".join(roots)
                return f"DataDir refused: {shown!r} is outside the data roots ({joined}){how}"
    existing = real
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"DataDir refused: {str(existing)!r} is not a directory"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"DataDir refused: {str(existing)!r} is not writable"
    return None
