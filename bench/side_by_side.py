"""The same experiment written by assonant-ioc and by the reference (PyPI ``assonant`` 3.0.0)
(and the same Bluesky run, through its data logger: ``bench.bluesky_side``),
both run through the same validators; prints errors and warnings per validator and the
write times. The reference's exposure entry is checked against the config's definition
(it cannot name one itself). Then whether the programs scientists run take each file:
nabu's dataset analyzer (NXtomo), nexusformat reading the frames, silx finding a default
plot, scippnexus loading the recorded series.

    python -m bench.side_by_side [--config configs/mogno.yaml ...] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from assonant_ioc.config import load_config
from assonant_ioc.nexus import write_experiment
from assonant_ioc.nexus.validate import ValidationReport, validate
from assonant_ioc.sim.experiment import simulated_experiment
from bench.reference import write_with_assonant

PROGRAMS = ("nabu", "nexusformat frames", "silx plot", "scippnexus logs")


def _nabu(path: Path, entry: str) -> None:
    from nabu.resources.dataset_analyzer import analyze_dataset

    if path.suffix != ".nx":  # the extension nabu takes for NXtomo, for both writers alike
        named = path.with_suffix(".nx")
        named.unlink(missing_ok=True)
        named.symlink_to(path.name)
        path = named
    dataset = analyze_dataset(str(path), extra_options={"hdf5_entry": entry})
    missing = [
        name
        for name in ("darks", "flats", "energy", "distance", "pixel_size")
        if not getattr(dataset, name)
    ]
    if missing or not dataset.projections:
        raise ValueError(f"no {', '.join(missing or ['projections'])}")


def _frames(path: Path, entry: str) -> None:
    import h5py
    import numpy as np
    from nexusformat.nexus import nxload

    with h5py.File(path, "r") as f:
        found: list[str] = []
        f[entry].visititems(
            lambda n, o: (
                found.append(n)
                if n.endswith("/data") and isinstance(o, h5py.Dataset) and o.ndim == 3
                else None
            )
        )
        if not found:
            raise ValueError("no frames")
        frames = f[f"{entry}/{found[0]}"][()]
    seen = nxload(str(path))[f"{entry}/{found[0]}"]
    if seen.shape != frames.shape or not np.array_equal(np.asarray(seen.nxvalue), frames):
        raise ValueError(f"reads {seen.shape}, the file holds {frames.shape}")


def _silx(path: Path, entry: str) -> None:
    import h5py
    from silx.io.nxdata import get_default

    with h5py.File(path, "r") as f:
        nxdata = get_default(f)
        if nxdata is None or not nxdata.is_valid:
            raise ValueError("no valid default NXdata")


def _scippnexus(path: Path, entry: str) -> None:
    import warnings

    import h5py
    import scippnexus as snx

    with h5py.File(path, "r") as f:
        logs: list[str] = []
        f[entry].visititems(
            lambda n, o: logs.append(n) if o.attrs.get("NX_class") in ("NXlog", b"NXlog") else None
        )
    with warnings.catch_warnings(record=True) as caught, snx.File(path) as f:
        warnings.simplefilter("always")
        for name in logs:
            f[f"{entry}/{name}"][()]
    fallbacks = [w for w in caught if "Falling back" in str(w.message)]
    if fallbacks or not logs:
        raise ValueError(f"{len(fallbacks)} of {len(logs)} NXlogs fall back to plain groups")


def programs(path: Path, definition: str, entry: str, frames: bool = True) -> dict[str, str]:
    """Each program's verdict on the file: "accepted", or "refused: <why>" ("-": not asked,
    e.g. for frames where the experiment has no detector frames)."""
    checks = {
        "nabu": _nabu if definition == "NXtomo" else None,
        "nexusformat frames": _frames if frames else None,
        "silx plot": _silx,
        "scippnexus logs": _scippnexus,
    }
    verdicts = {}
    for name, check in checks.items():
        if check is None:
            verdicts[name] = "-"
            continue
        try:
            check(path, entry)
            verdicts[name] = "accepted"
        except Exception as err:  # noqa: BLE001 - a refusal is the result
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            verdicts[name] = f"refused: {type(err).__name__}: {first}"[:100]
    return verdicts


REPO = Path(__file__).resolve().parents[1]
#: a beamline per technique: tomography, MX, SAXS, XRF, XAS, ARPES
DEFAULT_CONFIGS = ("mogno", "manaca", "sapucaia", "carnauba", "quati", "sape")
VALIDATORS = ("pynxtools", "nexusformat")


def compare(config_path: Path, work: Path) -> list[dict[str, Any]]:
    config = load_config(config_path)
    x = simulated_experiment(config, work)
    t = time.perf_counter()
    ours = write_experiment(x, work / "ours.nxs", config.compression)
    our_s = time.perf_counter() - t
    ref_s = write_with_assonant(x, work, "reference")
    exposure = x.exposure
    assumed = {exposure.moment.entry_name: config.definition} if exposure is not None else {}
    theirs = work / "reference.nxs"
    entry = exposure.moment.entry_name if exposure is not None else ""
    rows = [
        _row(config.beamline, config.definition, "assonant-ioc", our_s, validate(ours)),
        _row(
            config.beamline, config.definition, "assonant 3.0.0", ref_s, validate(theirs, assumed)
        ),
    ]
    frames = bool(config.frame_pvs())
    for row, path in zip(rows, (ours, theirs), strict=True):
        row["programs"] = programs(path, config.definition, entry, frames) if entry else {}
    return rows


def compare_bluesky(work: Path) -> list[dict[str, Any]]:
    """The Bluesky row: the same run's documents to ours and to the reference's data logger;
    every field the reference writes looked up in ours (same value, same units). Its
    documents carry no detector frames (the reference refuses external data), so the
    frame-reading programs are not asked."""
    from bench import bluesky_side

    csv_path = bluesky_side.pv_map(work)
    docs = bluesky_side.documents(csv_path)
    ours, our_s = bluesky_side.write_ours(csv_path, docs, work)
    theirs, ref_s = bluesky_side.write_reference(csv_path, docs, work)
    total, same, differ = bluesky_side.fields_compared(ours, theirs)
    definition = load_config(csv_path).definition
    rows = [
        _row("MANACA", definition, "ours, Bluesky", our_s, validate(ours)),
        _row("MANACA", definition, "ref, Bluesky", ref_s, validate(theirs)),
    ]
    rows[0]["reference_fields"] = {"total": total, "same": same, "differ": differ}
    for row, path, entry in zip(
        rows, (ours, theirs), ("during_exposure", "sample_acquisition"), strict=True
    ):
        verdicts = programs(path, "", entry)
        verdicts["nexusformat frames"] = "-"  # no frames in these documents
        row["programs"] = verdicts
    return rows


def _row(
    beamline: str, definition: str, writer: str, seconds: float, report: ValidationReport
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "beamline": beamline,
        "definition": definition,
        "writer": writer,
        "write_s": round(seconds, 4),
    }
    for v in VALIDATORS:
        row[f"{v}_errors"] = report.count(v, "error")
        row[f"{v}_warnings"] = report.count(v, "warning")
    row["first_errors"] = [str(f) for f in report.errors[:3]]
    row["pynxtools_verdicts"] = list(report.verdicts)
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--config",
        action="append",
        type=Path,
        help="beamline config (default: a Sirius beamline per technique, DEFAULT_CONFIGS)",
    )
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    configs = args.config or [REPO / "configs" / f"{name}.yaml" for name in DEFAULT_CONFIGS]
    rows = []
    for path in configs:
        with tempfile.TemporaryDirectory() as tmp:
            rows += compare(path, Path(tmp))
    with tempfile.TemporaryDirectory() as tmp:
        rows += compare_bluesky(Path(tmp))
    head = f"{'beamline':9} {'definition':10} {'writer':15} {'write s':>8}"
    head += "".join(f" {v + ' err':>15} {v + ' warn':>16}" for v in VALIDATORS)
    print(head)
    for r in rows:
        line = f"{r['beamline']:9} {r['definition']:10} {r['writer']:15} {r['write_s']:8.3f}"
        line += "".join(f" {r[v + '_errors']:15d} {r[v + '_warnings']:16d}" for v in VALIDATORS)
        print(line)
    for r in rows:
        for finding in r["first_errors"]:
            print(f"  {r['beamline']} {r['writer']}: {finding}")
    print("\npynxtools' own verdict (it prints it after its findings):")
    for r in rows:
        for verdict in r["pynxtools_verdicts"]:
            print(f"  {r['beamline']} {r['writer']}: {verdict}")
    print()
    print(f"{'beamline':9} {'writer':15} " + " ".join(f"{p:>18}" for p in PROGRAMS))
    for r in rows:
        said = r.get("programs", {})
        marks = [said.get(p, "-").split(":")[0] for p in PROGRAMS]
        print(f"{r['beamline']:9} {r['writer']:15} " + " ".join(f"{m:>18}" for m in marks))
    for r in rows:
        for program, verdict in r.get("programs", {}).items():
            if verdict.startswith("refused"):
                print(f"  {r['beamline']} {r['writer']} {program}: {verdict}")
    for r in rows:
        fields = r.get("reference_fields")
        if fields:
            print(
                f"\nBluesky run: of the {fields['total']} fields the reference writes, "
                f"{fields['same']} are in ours with the same value and units"
            )
            for line in fields["differ"]:
                print(f"  differs: {line}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    refused = [
        f"{r['beamline']}: {program}: {verdict}"
        for r in rows
        if r["writer"] in ("assonant-ioc", "ours, Bluesky")
        for program, verdict in r.get("programs", {}).items()
        if verdict.startswith("refused")
    ]
    refused += [
        f"Bluesky run: {line}"
        for r in rows
        for line in (r.get("reference_fields") or {}).get("differ", [])
    ]
    # a comparison that compared nothing is no comparison: it fails as a refusal does
    compared = [r["reference_fields"]["total"] for r in rows if r.get("reference_fields")]
    if not compared or min(compared) == 0:
        refused.append("Bluesky run: no field of the reference's file was compared")
    ours_rows = [r for r in rows if r["writer"] in ("assonant-ioc", "ours, Bluesky")]
    if not ours_rows or not all(r.get("programs") for r in ours_rows):
        refused.append("no program was asked to open one of our files")
    if refused:  # our files must open in every program, and hold the reference's: CI fails here
        sys.stderr.write("our files refused:\n" + "\n".join(refused) + "\n")
        raise SystemExit(1)


if __name__ == "__main__":
    main()
