"""Small builders of model objects for unit tests."""

from __future__ import annotations

from assonant_ioc.model.components import (
    Axis,
    Component,
    ComponentClass,
    DataField,
    Entry,
    Experiment,
    Moment,
    TimeSeries,
    TransformationType,
)
from assonant_ioc.model.readings import Reading

T0 = 1_790_000_000.0


def reading(pv: str, value: object, t: float = T0, units: str = "mm") -> Reading:
    return Reading.of(pv, value, t, units=units)


def experiment() -> Experiment:
    waveform = Reading.of("BL:wave", [1.5, 2.5, 3.5], T0, units="counts")
    lost = Reading.disconnected("BL:gone", T0 + 1)
    series = TimeSeries(tuple(reading("BL:x", float(i), T0 + i) for i in range(5)), "mm")
    stage = Component(
        "sample",
        ComponentClass.SAMPLE,
        fields={"temperature": DataField(reading("BL:T", 293.5, units="K"), "K")},
        axes={
            "rx": Axis(
                TransformationType.ROTATION,
                (0.0, 1.0, 0.0),
                None,
                "x",
                DataField(reading("BL:rx", 45.0, units="deg"), "deg"),
            ),
            "x": Axis(
                TransformationType.TRANSLATION,
                (1.0, 0.0, 0.0),
                (0.0, 0.0, 1.0),
                ".",
                DataField(reading("BL:x", 1.25), "mm"),
            ),
        },
    )
    crystal = Component(
        "crystal",
        ComponentClass.MONOCHROMATOR_CRYSTAL,
        fields={"d_spacing": DataField(reading("BL:d", 3.1356, units="angstrom"), "angstrom")},
    )
    mono = Component(
        "mono",
        ComponentClass.MONOCHROMATOR,
        fields={
            "energy": DataField(reading("BL:E", 12.0, units="keV"), "keV"),
            "spectrum": DataField(waveform, "counts"),
            "mode": DataField(reading("BL:mode", "Si111", units=""), ""),
            "frames": DataField(reading("BL:n", 7, units=""), ""),
            "lost": DataField(lost, ""),
        },
        subcomponents=(crystal,),
    )
    pre = Entry(Moment.PRE, T0, T0, (mono,), stage)
    during_stage = Component(
        "sample",
        ComponentClass.SAMPLE,
        axes={"x": Axis(TransformationType.TRANSLATION, (1.0, 0.0, 0.0), None, ".", series)},
    )
    during = Entry(Moment.DURING, T0, T0 + 5, (), during_stage)
    return Experiment("exp-1", "BL", "lysozyme", T0, T0 + 5, (pre, during))
