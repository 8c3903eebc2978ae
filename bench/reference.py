"""The same experiment written by the reference implementation (PyPI ``assonant`` 3.0.0)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import assonant.data_classes.components as ref  # type: ignore[import-not-found]
from assonant.data_classes.data_handlers import (  # type: ignore[import-not-found]
    Axis as RefAxis,
)
from assonant.data_classes.data_handlers import (
    DataField as RefField,
)
from assonant.data_classes.data_handlers import TimeSeries as RefSeries
from assonant.data_classes.enums import TransformationType as RefTransformation  # type: ignore[import-not-found]
from assonant.file_writer import AssonantFileWriter  # type: ignore[import-not-found]

from assonant_ioc.model.components import Component, DataField, Experiment, Value


def _handler(value: Value) -> Any:
    if isinstance(value, DataField):
        return RefField(value=value.reading.value, unit=value.units)
    return RefSeries(
        value=RefField(value=list(value.values), unit=value.units),
        timestamps=RefField(value=list(value.timestamps), unit="s"),
    )


def _component(comp: Component) -> Any:
    """Our component as the reference's data class of the same Assonant class."""
    cls = getattr(ref, comp.component_class.value, ref.Sensor)
    return cls(
        name=comp.name,
        fields={name: _handler(value) for name, value in comp.fields.items()},
        positions={
            name: RefAxis(
                value=_handler(axis.value),
                transformation_type=RefTransformation(axis.transformation_type.value),
            )
            for name, axis in comp.axes.items()
        },
        subcomponents={sub.name: _component(sub) for sub in comp.subcomponents},
    )


def write_with_assonant(x: Experiment, work: Path, name: str = "reference") -> float:
    """Seconds for assonant 3.0.0 to build its data classes and write every entry
    (to ``work/<name>.nxs``)."""
    t = time.perf_counter()
    writer = AssonantFileWriter("nexus")
    for entry in x.entries:
        comps = [*entry.instrument, *([entry.sample] if entry.sample is not None else [])]
        root = ref.Entry(
            name=entry.moment.entry_name,
            subcomponents={c.name: _component(c) for c in comps},
        )
        writer.write_data(str(work), name, root)
    return time.perf_counter() - t
