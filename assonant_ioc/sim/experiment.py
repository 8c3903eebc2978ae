"""A whole simulated experiment from a beamline config, without a beamline: every PV read,
the during PVs moving, and the detectors' dark, flat and projection files as areaDetector's
HDF5 plugin writes them. For tests and the side-by-side comparison with the reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from assonant_ioc.config.spec import BeamlineConfig
from assonant_ioc.model.components import Experiment, Moment
from assonant_ioc.model.readings import Reading
from assonant_ioc.sim.frames import write_frames
from assonant_ioc.snapshots import Captured, assemble

T0 = 1_790_000_000.0
#: the detector's exposure time (``count_time``), s
EXPOSURE = 1.0
#: (file stem, frames, image_key, frame stamps from T0) of each detector acquisition: each
#: frame stamped at the end of its exposure, as areaDetector does; the projections exposed
#: one a second while the during PVs step once a second, so frame i from T0 + i to T0 + i + 1
ACQUISITIONS = (
    ("dark", 2, 2, [-3.0, -2.0]),
    ("flat", 2, 1, [-1.0, 0.0]),
    ("proj", 9, 0, [i + EXPOSURE for i in range(9)]),
)


def _frame_shape(config: BeamlineConfig, detector: str) -> tuple[int, int]:
    """The detector module's ``data_size`` (slow, fast) when the config gives one, else 8 x 8."""
    for comp in config.components():
        if comp.name != detector:
            continue
        for sub in comp.walk():
            for const in sub.constants:
                if const.name == "data_size" and isinstance(const.value, tuple):
                    slow, fast = (int(v) for v in const.value[:2])
                    return slow, fast
    return 8, 8


def simulated_experiment(
    config: BeamlineConfig,
    folder: Path,
    points: int = 10,
    frame_shape: tuple[int, int] | None = None,
) -> Experiment:
    """Snapshots read 1.5 everywhere (the detectors' ``count_time`` 1 s); each during PV
    steps 0, 1, 2... once a second."""
    values = {
        ch.pv: Reading.of(ch.pv, EXPOSURE if ch.name == "count_time" else 1.5, T0, units=ch.units)
        for ch in config.channels()
        if ch.pv
    }
    series = {
        pv: [Reading.of(pv, float(i), T0 + i) for i in range(points)]
        for pv in config.pvs(Moment.DURING)
    }
    frames = {
        comp: [
            write_frames(
                folder / f"{comp}_{stem}.h5",
                np.full((n, *(frame_shape or _frame_shape(config, comp))), key, np.uint16),
                key,
                [T0 + t for t in times],
            )
            for stem, n, key, times in ACQUISITIONS
        ]
        for comp in config.frame_pvs()
    }
    captures = [
        Captured(Moment.PRE, values, T0, T0),
        Captured(Moment.DURING, series, T0, T0 + points),
        Captured(Moment.POST, values, T0 + points, T0 + points),
    ]
    return assemble(config, "exp-1", "lysozyme", captures, "", frames)
