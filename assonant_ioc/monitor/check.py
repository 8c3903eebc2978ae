"""``assonant-ioc check``: connect every PV of a beamline config and report what answers.

Prints a table (PV, component/field, connected, EGU vs declared units, type,
moments) and a summary, or JSON with ``--json``. Exits 1 when a PV is missing
or its EGU disagrees with the declared units (``mm`` and ``millimeter`` agree).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass

from assonant_ioc.arguments import Parser, repeated
from assonant_ioc.config import BeamlineConfig, ChannelSpec, ComponentSpec, load_config
from assonant_ioc.config.units import registry
from assonant_ioc.errors import ConfigError
from assonant_ioc.model.components import Moment
from assonant_ioc.monitor.ca import PVMonitor
from assonant_ioc.monitor.forwarder import forwarder_of

_registry = registry


def units_agree(declared: str, egu: str) -> bool | None:
    """Whether two unit strings mean the same unit; None when one of them is empty."""
    declared, egu = declared.strip(), egu.strip()
    if not declared or not egu:
        return None
    if declared == egu:
        return True
    ureg = _registry()
    try:
        return bool(ureg.parse_units(declared) == ureg.parse_units(egu))
    except Exception:  # noqa: BLE001 - pint raises several types for unknown units
        return declared.lower() == egu.lower()


UNITS_VERDICT = {True: "ok", False: "MISMATCH", None: "unknown"}


@dataclass(frozen=True)
class Row:
    pv: str
    where: str
    connected: bool
    egu: str | None
    declared: str
    units: str  # ok / MISMATCH / unknown / -
    type: str
    moments: str


def _paths(config: BeamlineConfig) -> list[tuple[str, ChannelSpec]]:
    out: list[tuple[str, ChannelSpec]] = []

    def walk(comp: ComponentSpec, base: str) -> None:
        path = f"{base}/{comp.name}" if base else comp.name
        out.extend((f"{path}/{ch.name}", ch) for ch in comp.channels)
        for sub in comp.subcomponents:
            walk(sub, path)

    for top in config.instrument:
        walk(top, "")
    if config.sample is not None:
        walk(config.sample, "")
    return out


def connect(config: BeamlineConfig, timeout: float, progress: bool) -> list[Row]:
    arrays = config.array_pvs()
    monitor = PVMonitor(config.pvs(), arrays.values(), forwarder_of(config))
    monitor.start()
    try:
        deadline = time.monotonic() + timeout
        total = monitor.total + len(monitor.arrays.pvs)
        while time.monotonic() < deadline:
            states = [monitor.describe(pv) for pv in monitor.pvs]
            done = sum(1 for conn, units, _ in states if conn and units is not None)
            done += len(monitor.arrays.connected)
            if progress:
                _progress(done, total)
            if done == total:
                break
            time.sleep(0.1)
        if progress:
            sys.stderr.write("\n")
        rows = []
        for where, ch in _paths(config):
            connected, egu, kind = monitor.describe(ch.pv)
            agree = units_agree(ch.units, egu or "") if connected else None
            units = UNITS_VERDICT[agree] if connected else "-"
            moments = ",".join(m.value for m in sorted(ch.moments, key=list(Moment).index))
            rows.append(Row(ch.pv, where, connected, egu, ch.units, units, kind, moments))
        for component, pv in arrays.items():  # a camera's frames over PVA
            connected = pv in monitor.arrays.connected
            kind = monitor.arrays.types.get(pv, "") if connected else ""
            rows.append(Row(pv, f"{component}/frames", connected, None, "", "-", kind, "during"))
        return rows
    finally:
        monitor.stop()


def _progress(done: int, total: int, width: int = 30) -> None:
    filled = width * done // max(total, 1)
    sys.stderr.write(f"\rconnecting [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    sys.stderr.flush()


def summary(rows: list[Row]) -> dict[str, int]:
    pvs = {r.pv: r for r in rows}
    return {
        "channels": len(rows),
        "pvs": len(pvs),
        "connected": sum(1 for r in pvs.values() if r.connected),
        "missing": sum(1 for r in pvs.values() if not r.connected),
        "unit_mismatches": sum(1 for r in rows if r.units == "MISMATCH"),
    }


def table(rows: list[Row]) -> str:
    head = ("PV", "COMPONENT/FIELD", "CONNECTED", "EGU", "DECLARED", "UNITS", "TYPE", "MOMENTS")
    body = [
        (
            r.pv,
            r.where,
            "yes" if r.connected else "MISSING",
            r.egu or "",
            r.declared,
            r.units,
            r.type,
            r.moments,
        )
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=True)]
    lines = [
        "  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)).rstrip()
        for line in (head, *body)
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="assonant-ioc check", description=__doc__)
    parser.add_argument("--config", required=True, help="beamline config (.yaml or .csv)")
    repeated(
        parser, "--macro", "set a $(NAME) macro of the config's PV names", metavar="NAME=VALUE"
    )
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for PVs")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    args = parser.parse_args(argv)
    macros = dict(item.partition("=")[::2] for item in args.macro)
    try:
        config = load_config(args.config, macros=macros)
    except ConfigError as err:
        sys.stderr.write(f"{err}\n")
        return 2
    # the bar redraws with \r: only on a terminal, never into a redirected file
    rows = connect(config, args.timeout, progress=not args.json and sys.stderr.isatty())
    totals = summary(rows)
    if args.json:
        sys.stdout.write(
            json.dumps({"rows": [asdict(r) for r in rows], "summary": totals}, indent=1) + "\n"
        )
    else:
        sys.stdout.write(table(rows) + "\n\n")
        sys.stdout.write(
            f"{totals['pvs']} PVs ({totals['channels']} fields/axes): {totals['connected']} "
            f"connected, {totals['missing']} missing, {totals['unit_mismatches']} unit "
            "mismatch(es)\n"
        )
    return 1 if totals["missing"] or totals["unit_mismatches"] else 0
