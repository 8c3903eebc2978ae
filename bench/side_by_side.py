"""The same experiment written by assonant-ioc and by the reference (PyPI ``assonant`` 3.0.0),
both run through the same validators; prints errors and warnings per validator and the
write times. The reference's exposure entry is checked against the config's definition
(it cannot name one itself).

    python -m bench.side_by_side [--config configs/mogno.yaml ...] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from assonant_ioc.config import load_config
from assonant_ioc.nexus import write_experiment
from assonant_ioc.nexus.validate import ValidationReport, validate
from assonant_ioc.sim.experiment import simulated_experiment
from bench.reference import write_with_assonant

REPO = Path(__file__).resolve().parents[1]
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
    return [
        _row(config.beamline, config.definition, "assonant-ioc", our_s, validate(ours)),
        _row(
            config.beamline, config.definition, "assonant 3.0.0", ref_s, validate(theirs, assumed)
        ),
    ]


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
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--config",
        action="append",
        type=Path,
        help="beamline config (default: configs/mogno.yaml and configs/manaca.yaml)",
    )
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    configs = args.config or [REPO / "configs" / "mogno.yaml", REPO / "configs" / "manaca.yaml"]
    rows = []
    for path in configs:
        with tempfile.TemporaryDirectory() as tmp:
            rows += compare(path, Path(tmp))
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
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
