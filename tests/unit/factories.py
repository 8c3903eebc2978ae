"""Small builders of model objects for unit tests."""

from __future__ import annotations

from assonant_ioc.model import components as model
from assonant_ioc.model.readings import Reading

T0 = 1_790_000_000.0


def reading(pv: str, value: object, t: float = T0, units: str = "mm") -> Reading:
    return Reading.of(pv, value, t, units=units)


def experiment() -> model.Experiment:
    waveform = Reading.of("BL:wave", [1.5, 2.5, 3.5], T0, units="counts")
    lost = Reading.disconnected("BL:gone", T0 + 1)
    series = model.TimeSeries(tuple(reading("BL:x", float(i), T0 + i) for i in range(5)), "mm")
    stage = model.Component(
        "sample",
        model.ComponentClass.SAMPLE,
        fields={"temperature": model.DataField(reading("BL:T", 293.5, units="K"), "K")},
        axes={
            "rx": model.Axis(
                model.TransformationType.ROTATION,
                (0.0, 1.0, 0.0),
                None,
                "x",
                model.DataField(reading("BL:rx", 45.0, units="deg"), "deg"),
            ),
            "x": model.Axis(
                model.TransformationType.TRANSLATION,
                (1.0, 0.0, 0.0),
                (0.0, 0.0, 1.0),
                ".",
                model.DataField(reading("BL:x", 1.25), "mm"),
            ),
        },
    )
    crystal = model.Component(
        "crystal",
        model.ComponentClass.MONOCHROMATOR_CRYSTAL,
        fields={
            "d_spacing": model.DataField(reading("BL:d", 3.1356, units="angstrom"), "angstrom")
        },
    )
    mono = model.Component(
        "mono",
        model.ComponentClass.MONOCHROMATOR,
        fields={
            "energy": model.DataField(reading("BL:E", 12.0, units="keV"), "keV"),
            "spectrum": model.DataField(waveform, "counts"),
            "mode": model.DataField(reading("BL:mode", "Si111", units=""), ""),
            "frames": model.DataField(reading("BL:n", 7, units=""), ""),
            "lost": model.DataField(lost, ""),
        },
        subcomponents=(crystal,),
    )
    pre = model.Entry(model.Moment.PRE, T0, T0, (mono,), stage)
    during_stage = model.Component(
        "sample",
        model.ComponentClass.SAMPLE,
        axes={
            "x": model.Axis(
                model.TransformationType.TRANSLATION, (1.0, 0.0, 0.0), None, ".", series
            )
        },
    )
    during = model.Entry(model.Moment.DURING, T0, T0 + 5, (), during_stage)
    return model.Experiment("exp-1", "BL", "lysozyme", T0, T0 + 5, (pre, during))
