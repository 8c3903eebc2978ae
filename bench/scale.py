"""A scale beamline: N counter PVs served by a C IOC, and a config that maps them."""

from __future__ import annotations

from pathlib import Path

COUNTER_DB = """\
# One counter: +1 every scan period. $(P)$(N) with SCAN $(SCAN).
record(calc, "$(P)$(N)") {
    field(SCAN, "$(SCAN)")
    field(INPA, "$(P)$(N) NPP")
    field(CALC, "A+1")
    field(EGU, "counts")
}
"""


def write_scale_db(folder: Path, n: int, scan: str) -> str:
    """Write ``counter.db`` and a substitutions file for ``n`` counters; returns its name."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "counter.db").write_text(COUNTER_DB)
    rows = "\n".join(f'    {{ s{i:05d}, "{scan}" }}' for i in range(n))
    name = f"scale_{n}.substitutions"
    (folder / name).write_text(f'file "counter.db" {{\n    pattern {{ N, SCAN }}\n{rows}\n}}\n')
    return name


def pv_names(prefix: str, n: int) -> list[str]:
    return [f"{prefix}s{i:05d}" for i in range(n)]


def write_scale_config(path: Path, prefix: str, n: int, during: int = 0) -> Path:
    """A config with ``n`` PVs in 100 detector-like components; the first ``during`` also record."""
    # the local broker (Tansu) grants no producer id
    lines = ["beamline: SCALE", "kafka:", "  idempotent: false", "instrument:"]
    per = max(1, n // 100)
    for c in range(0, n, per):
        lines += [f"  - name: comp{c // per:03d}", "    class: Sensor", "    fields:"]
        for i in range(c, min(c + per, n)):
            moments = "[pre, during, post]" if i < during else "[pre, post]"
            lines.append(
                f'      f{i:05d}: {{pv: "{prefix}s{i:05d}", units: counts, moments: {moments}}}'
            )
    path.write_text("\n".join(lines) + "\n")
    return path
