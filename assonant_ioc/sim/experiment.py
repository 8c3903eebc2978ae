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
#: (file stem, frames, image_key, frame times from T0) of each detector acquisition
ACQUISITIONS = (
    ("dark", 2, 2, [-2.0, -1.9]),
    ("flat", 2, 1, [-1.0, -0.9]),
    ("proj", 9, 0, [i + 0.5 for i in range(9)]),
)


def simulated_experiment(config: BeamlineConfig, folder: Path, points: int = 10) -> Experiment:
    """Snapshots read 1.5 everywhere; each during PV steps 0, 1, 2... once a second."""
    values = {
        ch.pv: Reading.of(ch.pv, 1.5, T0, units=ch.units) for ch in config.channels() if ch.pv
    }
    series = {
        pv: [Reading.of(pv, float(i), T0 + i) for i in range(points)]
        for pv in config.pvs(Moment.DURING)
    }
    frames = {
        comp: [
            write_frames(
                folder / f"{comp}_{stem}.h5",
                np.full((n, 8, 8), key, np.uint16),
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
