"""The same experiment written by the reference implementation (PyPI ``assonant`` 3.0.0)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from assonant.data_classes.components import Entry, Sensor  # type: ignore[import-not-found]
from assonant.data_classes.data_handlers import (  # type: ignore[import-not-found]
    DataField as RefField,
)
from assonant.data_classes.data_handlers import TimeSeries as RefSeries
from assonant.file_writer import AssonantFileWriter  # type: ignore[import-not-found]

from assonant_ioc.model.components import Component, DataField, Experiment


def _component(comp: Component) -> Any:
    fields: dict[str, Any] = {}
    for name, value in comp.fields.items():
        if isinstance(value, DataField):
            fields[name] = RefField(value=value.reading.value, unit=value.units)
        else:
            fields[name] = RefSeries(
                value=RefField(value=list(value.values), unit=value.units),
                timestamps=RefField(value=list(value.timestamps), unit="s"),
            )
    return Sensor(name=comp.name, fields=fields)


def write_with_assonant(x: Experiment, work: Path) -> float:
    """Seconds for assonant 3.0.0 to build its data classes and write every entry."""
    t = time.perf_counter()
    writer = AssonantFileWriter("nexus")
    for entry in x.entries:
        ref = Entry(
            name=entry.moment.entry_name,
            subcomponents={c.name: _component(c) for c in entry.instrument},
        )
        writer.write_data(str(work), "reference", ref)
    return time.perf_counter() - t
