"""Nothing that arrives is trusted: the one rule for a path or a text from outside.

A path named by an event, a Bluesky document or a PV is resolved (symbolic links followed)
and must lie under one of the roots the service was given; the path as written holds no
``..`` and no control or bidirectional character; the file is a regular file (never a
device such as ``/dev/zero``, a FIFO or a directory), opened without blocking and read
with a bound on its size and on the time the read takes. Anything else raises
:class:`Refused`, whose ``reason`` is a short name the services count on ``/metrics``
(``outside_roots``, ``not_regular``...) and whose text says what was refused and why.

Every service that takes a path from outside goes through here: the catalog consumer and
the processor (``--read DIR``), the Bluesky writer (the config's ``detector_dirs``).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import time
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

#: a file bigger than this is not read (a sparse file of a petabyte is a regular file)
MAX_BYTES = 1 << 40
#: a read of one file that takes longer than this is given up (a hung network mount)
MAX_SECONDS = 600.0
#: the longest path taken (Linux's PATH_MAX)
MAX_PATH_BYTES = 4096

REASONS = (
    "bad_text",
    "relative",
    "traversal",
    "outside_roots",
    "missing",
    "not_regular",
    "too_big",
    "too_slow",
    "unreadable",
    "checksum",
)


class Refused(ValueError):
    """A path (or a file) from outside that is not taken; ``reason`` is one of
    :data:`REASONS`."""

    def __init__(self, reason: str, text: str) -> None:
        super().__init__(text)
        self.reason = reason


#: Bidirectional formatting characters: they make a name display as another (U+202E).
_BIDI = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}


def control_characters(text: str) -> bool:
    """Any Unicode control character (category Cc: C0, DEL and C1, such as U+0085 and the
    terminal escape introducer U+009B) or bidirectional formatting character."""
    return any(unicodedata.category(c) == "Cc" or c in _BIDI for c in text)


def _shown(text: str) -> str:
    return repr(text if len(text) <= 160 else text[:157] + "...")


def roots_of(dirs: Iterable[str | os.PathLike[str]]) -> tuple[Path, ...]:
    """The roots as resolved directories (a root that is a symbolic link is its target)."""
    return tuple(Path(os.path.realpath(d)) for d in dirs)


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def within(text: object, roots: Sequence[Path], what: str = "path") -> Path:
    """The resolved path ``text`` names, when it may be taken; else :class:`Refused`.

    ``roots``: resolved directories (:func:`roots_of`); none given refuses every path."""
    if not isinstance(text, str) or not text:
        raise Refused("bad_text", f"{what} {text!r} is not a path")
    if len(text.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise Refused("bad_text", f"{what} is longer than {MAX_PATH_BYTES} bytes")
    if "\0" in text or control_characters(text):
        raise Refused("bad_text", f"{what} {_shown(text)} has a control or bidirectional character")
    if not os.path.isabs(text):
        raise Refused("relative", f"{what} {_shown(text)} is not an absolute path")
    if ".." in text.split("/"):
        raise Refused("traversal", f"{what} {_shown(text)} has a '..' component")
    real = Path(os.path.realpath(text))
    if not any(_inside(real, root) for root in roots):
        said = ", ".join(str(r) for r in roots) or "none given"
        how = "" if str(real) == os.path.normpath(text) else f" (it resolves to {str(real)!r})"
        raise Refused(
            "outside_roots", f"{what} {_shown(text)} is outside the data roots ({said}){how}"
        )
    return real


@dataclass(frozen=True)
class Read:
    path: Path
    size: int
    sha256: str


def open_regular(real: Path, what: str = "file") -> int:
    """A descriptor of the regular file at ``real`` (resolved), opened without following a
    link and without blocking (a FIFO does not hang the open); else :class:`Refused`."""
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise Refused("missing", f"{what} {str(real)!r}: no such file") from None
    except OSError as err:
        raise Refused("unreadable", f"{what} {str(real)!r}: {err.strerror or err}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = (
                "a FIFO"
                if stat.S_ISFIFO(mode)
                else "a device"
                if stat.S_ISCHR(mode) or (stat.S_ISBLK(mode))
                else "a directory"
                if stat.S_ISDIR(mode)
                else "not a regular file"
            )
            raise Refused("not_regular", f"{what} {str(real)!r} is {kind}, not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_checked(
    text: object,
    roots: Sequence[Path],
    what: str = "file",
    max_bytes: int = MAX_BYTES,
    max_seconds: float = MAX_SECONDS,
) -> Read:
    """The size and sha256 of the regular file ``text`` names under ``roots``, read with
    bounds on size and time; :class:`Refused` (with its reason) for anything else."""
    real = within(text, roots, what)
    return digest_regular(real, what, max_bytes, max_seconds)


def digest_regular(
    real: Path, what: str = "file", max_bytes: int = MAX_BYTES, max_seconds: float = MAX_SECONDS
) -> Read:
    """:func:`read_checked` of a path already judged (resolved, under the roots)."""
    fd = open_regular(real, what)
    with os.fdopen(fd, "rb", buffering=0) as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > max_bytes:
            raise Refused("too_big", f"{what} {str(real)!r} has {size} bytes, at most {max_bytes}")
        digest = hashlib.sha256()
        deadline = time.monotonic() + max_seconds
        done = 0
        try:
            while block := fh.read(1 << 20):
                done += len(block)
                if done > max_bytes:  # it grows while it is read
                    raise Refused("too_big", f"{what} {str(real)!r} grew past {max_bytes} bytes")
                digest.update(block)
                if time.monotonic() > deadline:
                    raise Refused(
                        "too_slow", f"{what} {str(real)!r} not read within {max_seconds:g} s"
                    )
        except OSError as err:
            raise Refused("unreadable", f"{what} {str(real)!r}: {err.strerror or err}") from None
    return Read(real, done, digest.hexdigest())


def text_refusal(name: str, value: object, max_bytes: int = 1023) -> str | None:
    """Why ``value`` cannot name a file or be written as the text ``name`` (the IOC's
    settings' rules: no C0/C1/DEL, no bidirectional formatting, no NUL, a bounded length),
    or None. Used on what a Bluesky start document brings before its run is taken."""
    if not isinstance(value, str):
        return None
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        return f"{name} has {size} bytes, at most {max_bytes}"
    if control_characters(value):
        return f"{name} {_shown(value)} has a control or bidirectional character"
    return None


#: a proposal id: what a user office issues (2026-0001, mx1234-5, 20250123) and tiled takes
#: as an access tag
_PROPOSAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def proposal_refusal(name: str, value: object) -> str | None:
    """Why ``value`` cannot be a proposal id (letters, digits, '.', '_', '-', at most 64,
    starting with a letter or digit), or None; the empty text is no proposal."""
    if value == "":
        return None
    if not isinstance(value, str) or not _PROPOSAL.fullmatch(value):
        shown = _shown(value) if isinstance(value, str) else repr(value)
        return (
            f"{name} {shown} is not a proposal id: letters, digits, '.', '_' and '-' only "
            "(at most 64), starting with a letter or digit"
        )
    return None


def name_refusal(name: str, value: object, max_bytes: int = 255) -> str | None:
    """As :func:`text_refusal`, for a text that becomes part of a file name: no ``/``, not
    ``.`` or ``..``."""
    said = text_refusal(name, value, max_bytes)
    if said or not isinstance(value, str):
        return said
    if "/" in value or value.strip() in (".", ".."):
        return f"{name} {_shown(value)} cannot be part of a file name ('/' or '..')"
    return None
