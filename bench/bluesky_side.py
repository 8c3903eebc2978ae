"""The same Bluesky run written by assonant-ioc (``documents``) and by the reference's
``AssonantDataLogger.log_bluesky_data_from_documents_list`` (PyPI ``assonant`` 3.0.0).

The run: MANACA's PV map (the CSV both read) as ophyd-style data keys (``source: PV:...``,
the form the reference looks PVs up by): a baseline stream read at start and stop, and
``events`` primary events of the PVs it scans. Every field the reference writes is looked
up in ours by its PV and moment (its snapshot_at_start, scan and snapshot_at_end are our
pre_exposure, during_exposure and post_exposure): same value, same units.

The reference cannot write a snapshot holding a ``Collection`` component (its component
factory fails on the class name its own CSV uses): those rows are left out for both.
"""

from __future__ import annotations

import csv
import dataclasses
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from assonant_ioc.config.loader import load_config
from assonant_ioc.documents.writer import RunWriter

REPO = Path(__file__).resolve().parents[1]
PV_MAP = REPO / "assonant_ioc" / "configs" / "manaca_pv_map.csv"
#: the reference's entry (under its experiment stage) -> ours
MOMENTS = {
    "snapshot_at_start": "pre_exposure",
    "scan": "during_exposure",
    "snapshot_at_end": "post_exposure",
}


def pv_map(work: Path) -> Path:
    """MANACA's PV map without its Collection rows (see the module's note)."""
    lines = PV_MAP.read_text(encoding="utf-8").splitlines()
    path = work / "manaca_bluesky.csv"
    path.write_text("\n".join(x for x in lines if ",Collection," not in x) + "\n")
    return path


def documents(csv_path: Path, events: int = 20) -> list[tuple[str, dict[str, Any]]]:
    """A run over the PV map: baseline at start and stop, ``events`` scan events."""
    from event_model import compose_run

    rows = list(csv.reader(csv_path.open(encoding="utf-8")))[2:]
    pvs = {r[7]: (r[4], r[6]) for r in rows if len(r) > 7 and r[7]}
    t0 = time.time()
    run = compose_run(metadata={"experiment_id": "bluesky-side", "sample": "lysozyme"}, time=t0)
    docs: list[tuple[str, dict[str, Any]]] = [("start", dict(run.start_doc))]

    def key(pv: str) -> str:
        return pv.replace(":", "_").replace(".", "_").replace("-", "_")

    def keys(scan: bool) -> dict[str, Any]:
        return {
            key(pv): {"source": f"PV:{pv}", "dtype": "number", "shape": [], "units": units}
            for pv, (units, kind) in pvs.items()
            if (kind in ("scan", "vary")) == scan or kind == "vary"
        }

    base = run.compose_descriptor(name="baseline", data_keys=keys(False), configuration={})
    primary = run.compose_descriptor(name="primary", data_keys=keys(True), configuration={})
    docs += [
        ("descriptor", dict(base.descriptor_doc)),
        ("descriptor", dict(primary.descriptor_doc)),
    ]

    def event(desc: Any, i: int, t: float) -> dict[str, Any]:
        names = desc.descriptor_doc["data_keys"]
        data = {key(pv): 1.5 + 0.25 * i + (len(pv) % 7) for pv in pvs if key(pv) in names}
        return dict(
            desc.compose_event(data=data, timestamps={k: t for k in data}, time=t, seq_num=None)
        )

    docs.append(("event", event(base, 0, t0 + 0.1)))
    docs += [("event", event(primary, i, t0 + 0.2 + 0.1 * i)) for i in range(events)]
    docs.append(("event", event(base, 1, t0 + 0.3 + 0.1 * events)))
    docs.append(("stop", dict(run.compose_stop(time=t0 + 0.4 + 0.1 * events))))
    return docs


def write_ours(
    csv_path: Path, docs: list[tuple[str, dict[str, Any]]], work: Path
) -> tuple[Path, float]:
    config = dataclasses.replace(load_config(csv_path), validate=False)
    t = time.perf_counter()
    writer = RunWriter(config, work / "state", str(work / "ours"))
    done: list[str] = []
    for name, doc in docs:
        done += writer.add(name, doc)
    written = writer.write(done[0])
    writer.close()
    return written.path, time.perf_counter() - t


def write_reference(
    csv_path: Path, docs: list[tuple[str, dict[str, Any]]], work: Path
) -> tuple[Path, float]:
    from assonant.data_logger import AssonantDataLogger  # type: ignore[import-not-found]
    from assonant.naming_standards import (  # type: ignore[import-not-found]
        AcquisitionType,
        BeamlineName,
        ExperimentStage,
    )

    t = time.perf_counter()
    logger = AssonantDataLogger(BeamlineName.MANACA, data_schema_file_path=str(csv_path))
    for kind in MOMENTS:
        logger.log_bluesky_data_from_documents_list(
            str(work), "reference", ExperimentStage.SAMPLE_ACQUISITION, AcquisitionType(kind), docs
        )
    return work / "reference.nxs", time.perf_counter() - t


def _ours_by_pv(path: Path) -> dict[tuple[str, str], tuple[Any, str]]:
    """(entry, PV) -> (value, units) of every field our file says a PV gave."""
    out: dict[tuple[str, str], tuple[Any, str]] = {}

    def put(entry: str, source: str, item: h5py.Dataset) -> None:
        units = item.attrs.get("units", "")
        units = units.decode() if isinstance(units, bytes) else str(units)
        pv = source[3:] if source.startswith("PV:") else source
        out[(entry, pv)] = (item[()], units)

    with h5py.File(path, "r") as f:
        for entry in f.values():
            prov = entry.get("provenance")
            if not isinstance(prov, h5py.Group):
                continue
            tables: list[tuple[str, h5py.Group]] = []
            prov.visititems(
                lambda n, o, tables=tables: (
                    tables.append((n, o))
                    if isinstance(o, h5py.Group) and "source_pv" in o
                    else None
                )
            )
            for rel, table in tables:
                if "field" not in table:  # a recorded series: its NXlog's mirror
                    source = table["source_pv"][()]
                    log = entry.get(f"{rel}/value")
                    if isinstance(log, h5py.Dataset):
                        text = source.decode() if isinstance(source, bytes) else str(source)
                        put(entry.name.strip("/"), text, log)
                    continue
                fields = [x.decode() for x in np.atleast_1d(table["field"][()])]
                sources = [x.decode() for x in np.atleast_1d(table["source_pv"][()])]
                for name, source in zip(fields, sources, strict=False):
                    item = entry.get(f"{rel}/{name}")
                    if isinstance(item, h5py.Group) and "value" in item:
                        item = item["value"]
                    if isinstance(item, h5py.Dataset):
                        put(entry.name.strip("/"), source, item)
    return out


def fields_compared(ours: Path, theirs: Path) -> tuple[int, int, list[str]]:
    """(reference fields, found in ours with the same value and units, what differs)."""
    have = _ours_by_pv(ours)
    total, same, differ = 0, 0, []
    with h5py.File(theirs, "r") as f:
        found: list[tuple[str, h5py.Dataset]] = []
        f.visititems(
            lambda n, o: (
                found.append((n, o))
                if isinstance(o, h5py.Dataset) and "pv_name" in o.attrs
                else None
            )
        )
        for name, item in found:
            total += 1
            moment = next((m for m in MOMENTS if f"/{m}/" in f"/{name}/"), "")
            pv = item.attrs["pv_name"]
            pv = pv.decode() if isinstance(pv, bytes) else str(pv)
            unit = item.attrs.get("unit", "")
            unit = "" if not isinstance(unit, (str, bytes)) else unit
            unit = unit.decode() if isinstance(unit, bytes) else unit
            mine = have.get((MOMENTS.get(moment, ""), pv))
            if mine is None:
                differ.append(f"{name} ({pv}): not in ours")
            elif not np.allclose(np.asarray(mine[0], float), np.asarray(item[()], float)):
                differ.append(f"{name} ({pv}): {mine[0]!r} in ours, {item[()]!r} in theirs")
            elif mine[1] != unit:
                differ.append(f"{name} ({pv}): units {mine[1]!r} in ours, {unit!r} in theirs")
            else:
                same += 1
    return total, same, differ
