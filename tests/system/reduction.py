"""Helpers of the reduction tests: the artifacts directory, the processes a process left,
and (from assonant_ioc.sim.records) the catalog read in-process and small NXxas files."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from assonant_ioc.sim.records import all_announced, catalog_get, catalog_records, xas_file

__all__ = ["all_announced", "catalog_get", "catalog_records", "xas_file"]

REPO = Path(__file__).resolve().parents[2]
#: screenshots and other artifacts a person looks at after a run
ARTIFACTS = REPO / "test-artifacts"


def children(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of every live process whose parent is ``pid``."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[1]) == pid:
            out.append((int(entry.name), cmdline))
    return out


def descendants(pid: int) -> list[tuple[int, str]]:
    found, todo = [], [pid]
    while todo:
        for child in children(todo.pop()):
            found.append(child)
            todo.append(child[0])
    return found


def nabu_by_hand(master: Path, work: Path) -> Path:
    """nabu as a scientist runs it on a copy of the file: ``nabu-config --dataset``, then
    ``nabu``, nothing changed; its reconstructed volume's file."""
    bin_dir = Path(sys.executable).parent
    shutil.copytree(master.parent, work)
    subprocess.run(
        [bin_dir / "nabu-config", "--dataset", master.name, "--output", "nabu.conf"],
        cwd=work,
        check=True,
        capture_output=True,
    )
    run = subprocess.run(
        [bin_dir / "nabu", "nabu.conf"], cwd=work, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0 and "Reconstruction completed" in run.stdout, run.stdout[-2000:]
    (volume_file,) = work.glob("*_rec.hdf5")
    return volume_file
