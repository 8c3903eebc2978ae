"""The write benchmark's content, and its baseline: a minimal h5py script, same datasets."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from assonant_ioc.model import components as model
from assonant_ioc.model.readings import Reading, Severity

T0 = 1_790_000_000.0


def _reading(pv: str, value: float, t: float) -> Reading:
    return Reading(pv, value, "float64", (), "mm", t, Severity.NO_ALARM, 0, True)


def synthetic_experiment(n: int, series: int, points: int) -> model.Experiment:
    """``n`` fields in 100 components, pre and post, plus ``series`` time series of ``points``."""
    per = max(1, n // 100)

    def snapshot(moment: model.Moment, t: float) -> model.Entry:
        comps = tuple(
            model.Component(
                f"comp{c:03d}",
                model.ComponentClass.SENSOR,
                {
                    f"f{i:05d}": model.DataField(_reading(f"BL:s{i:05d}", float(i), t), "mm")
                    for i in range(c * per, min((c + 1) * per, n))
                },
            )
            for c in range((n + per - 1) // per)
        )
        return model.Entry(moment, t, t, comps, None)

    during = model.Entry(
        model.Moment.DURING,
        T0,
        T0 + points,
        (
            model.Component(
                "recorded",
                model.ComponentClass.SENSOR,
                {
                    f"f{j:03d}": model.TimeSeries(
                        tuple(
                            _reading(f"BL:s{j:05d}", float(k), T0 + k * 0.1) for k in range(points)
                        ),
                        "mm",
                    )
                    for j in range(series)
                },
            ),
        ),
        None,
    )
    return model.Experiment(
        "bench",
        "BENCH",
        "",
        T0,
        T0 + points,
        (snapshot(model.Moment.PRE, T0), during, snapshot(model.Moment.POST, T0 + points)),
    )


def minimal_h5py(x: model.Experiment, path: Path, units: bool = True) -> None:
    """The same groups and datasets, written as plainly as h5py allows, with ``units``
    (``units=False``: no attributes at all, the floor)."""
    with h5py.File(path, "w") as f:
        for entry in x.entries:
            inst = f.create_group(f"{entry.moment.entry_name}/instrument")
            for comp in entry.instrument:
                g = inst.create_group(comp.name)
                for name, value in comp.fields.items():
                    if isinstance(value, model.DataField):
                        ds = g.create_dataset(name, data=value.reading.value)
                        if units:
                            ds.attrs["units"] = value.units
                    else:
                        log = g.create_group(name)
                        data = np.array(value.values, dtype=float)
                        times = np.array(value.timestamps) - entry.start_time
                        ds = log.create_dataset("value", data=data)
                        ts = log.create_dataset("time", data=times)
                        if units:
                            ds.attrs["units"], ts.attrs["units"] = value.units, "s"
