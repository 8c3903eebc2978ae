"""Files and catalog reads the processing tests and the fuzz bench share: the catalog read
in this process (tiled's adapter), and small NXxas files of a copper foil's edge with the
``file_written`` event announcing each."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from assonant_ioc.catalog.record import record_key
from assonant_ioc.model.times import iso
from assonant_ioc.sim import samples, scans


def catalog_get(db: str, path: Path | str) -> dict[str, Any] | None:
    """The catalog's metadata of the file at ``path`` (tiled's adapter, in this process)."""
    return catalog_records(db, [path])[0]


def catalog_records(db: str, paths: list[Path | str]) -> list[dict[str, Any] | None]:
    """The catalog's metadata of each file (one opening of the catalog for all)."""
    from assonant_ioc.catalog.store import Catalog

    async def get() -> list[dict[str, Any] | None]:
        catalog = await Catalog.open(db)
        try:
            return [await catalog.get(record_key(Path(p))) for p in paths]
        finally:
            await catalog.close()

    return asyncio.run(get())


def all_announced(db: str, paths: list[Path | str], pipeline: str) -> bool:
    """Whether every file's result of ``pipeline`` is done and its event sent."""
    records = catalog_records(db, paths)
    return all((r or {}).get("results", {}).get(pipeline, {}).get("announced") for r in records)


def xas_file(path: Path, seed: int) -> dict[str, Any]:
    """An NXxas file of a copper foil's edge (as the IOC writes one: the fields the
    pipeline reads) and the ``file_written`` event announcing it."""
    energy_kev = scans.xas_energies()
    rng = np.random.default_rng(seed)
    i0 = np.round(2e6 * (1 + 0.001 * rng.standard_normal(energy_kev.size)))
    mu = np.array([samples.copper_mu_t(e * 1000) for e in energy_kev])
    it = np.round(i0 * np.exp(-mu))
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        entry = f.create_group("during_exposure")
        entry.attrs["NX_class"] = "NXentry"
        entry.create_dataset("definition", data="NXxas")
        mono = entry.create_group("instrument/monochromator")
        mono.create_dataset("energy", data=energy_kev).attrs["units"] = "keV"
        entry.create_dataset("instrument/i0/data", data=i0)
        entry.create_dataset("instrument/itrans/data", data=it)
    data = path.read_bytes()
    now = time.time()
    return {
        "schema_version": 1,
        "event_type": "file_written",
        "event_id": uuid.uuid4().hex,
        "beamline": "SIM",
        "experiment_id": path.stem,
        "sample_name": "Cu foil",
        "file_path": str(path),
        "file_size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "moments": ["during_exposure"],
        "readings_captured": int(3 * energy_kev.size),
        "readings_disconnected": 0,
        "start_time": iso(now - 10),
        "end_time": iso(now),
        "written_at": iso(now),
        "definition": "NXxas",
    }
