"""A file is written under a hidden name and given its final name once complete (atomic, never
overwriting, durable); the writer's findings kept in the file and read back."""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import h5py
import numpy as np

from assonant_ioc.errors import WriteFailed
from assonant_ioc.model.components import (
    Experiment,
)
from assonant_ioc.model.reserved import PROVENANCE
from assonant_ioc.nexus.appdef import Checks
from assonant_ioc.nexus.h5 import (
    STR_DTYPE,
    nx_group,
)

log = logging.getLogger(__name__)


def partial_path(final: Path) -> Path:
    """The hidden name a file is written under until it is complete."""
    return final.with_name(f".{final.name}.partial")


#: Where the writer's own findings are kept: the exposure entry's provenance collection.
CHECKS = "checks"


def write_checks(f: h5py.File, x: Experiment, checks: Checks) -> None:
    """The writer's findings (``error: ...``/``warning: ...``) in the exposure entry's
    provenance collection, for ``checks_of`` (the event, the validators, ``inspect``)."""
    found = [f"error: {e}" for e in checks.errors] + [f"warning: {w}" for w in checks.warnings]
    if not found or x.exposure is None:
        return
    entry = f[x.exposure.moment.entry_name]
    collection = entry.get(PROVENANCE) or nx_group(entry, PROVENANCE, "NXcollection")
    collection.create_dataset(CHECKS, data=np.array(found, dtype=STR_DTYPE))


def checks_of(path: str | os.PathLike[str]) -> tuple[list[str], list[str]]:
    """(errors, warnings) the writer found in the file at ``path``."""
    errors: list[str] = []
    warnings: list[str] = []
    with h5py.File(path, "r", locking=False) as f:
        for entry in f.values():
            found = entry.get(f"provenance/{CHECKS}") if isinstance(entry, h5py.Group) else None
            if not isinstance(found, h5py.Dataset):
                continue
            for item in found.asstr()[()].tolist():
                kind, _, text = item.partition(": ")
                (errors if kind == "error" else warnings).append(text)
    return errors, warnings


class Tracebacks(io.StringIO):
    """stderr while a file is written: what h5py prints of objects it cannot close after a
    failed write is counted (one per traceback), not printed."""

    def __init__(self, count: list[int]) -> None:
        super().__init__()
        self.count = count

    def write(self, text: str) -> int:
        self.count[0] += text.count("Traceback (most recent call last)")
        return len(text)


def publish(tmp: Path, final: Path) -> None:
    """Give the complete file ``tmp`` its final name (atomic; never overwrites), durably."""
    try:
        os.link(tmp, final)  # fails rather than overwrite a file that appeared
        tmp.unlink()
        fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as err:
        raise WriteFailed(f"cannot name {final}: {err}") from err
    log.info("wrote %s", final)
