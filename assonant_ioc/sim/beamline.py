"""A simulated beamline IOC: motors, monochromator, slits, sample stage, detector, ring.

The same PVs are served by a C IOC from ``db/sim_beamline.substitutions``.
Everything updates at a bounded rate (motors at 10 Hz, sensors at 1 Hz).

PVs, with ``P`` the prefix (default ``SIM:``):

- motors ``$(P)<m>:VAL`` (setpoint), ``:RBV`` (readback, moves toward VAL at
  ``:VELO`` units/s), ``:DMOV`` (1 when done), units in EGU; motors are
  ``smp:x``, ``smp:y``, ``smp:z`` (mm), ``smp:rx`` (deg), ``s1:hgap``, ``s1:vgap``,
  ``s1:hcen``, ``s1:vcen`` (mm), ``mono:energy`` (keV)
- ``$(P)mono:wavelength`` (angstrom, from the energy readback)
- ``$(P)det:Acquire``, ``det:AcquireTime`` (s), ``det:ArrayCounter_RBV``,
  ``det:Temperature`` (degC),
  ``det:ImageKey`` (0 projection, 1 flat, 2 dark); ``det:HDF1:FilePath``, ``FileName``,
  ``FileNumber``, ``FullFileName_RBV``, ``NumCaptured_RBV``: when an acquisition stops its
  frames are written to ``FilePath/FileName_NNN.h5`` as areaDetector's HDF5 plugin does
  (caproto beamline only; the C IOC serves the PVs without writing files)
- ``$(P)ring:current`` (mA)
"""

from __future__ import annotations

import asyncio
import random
import textwrap
import time
from typing import Any

import numpy as np
from caproto import ChannelType
from caproto.server import PVGroup, SubGroup, pvproperty, run, template_arg_parser

from assonant_ioc.sim import phantom
from assonant_ioc.sim.frames import write_frames

#: hc in keV * angstrom
HC_KEV_ANGSTROM = 12.398419843320026
MOTOR_PERIOD = 0.1


def motor_group(units: str, velocity: float, initial: float) -> type[PVGroup]:
    """A motor-like group: VAL, RBV moving toward VAL at VELO units/s, DMOV."""

    class Motor(PVGroup):
        VAL = pvproperty(value=initial, units=units, precision=4, record="ao", doc="setpoint")
        RBV = pvproperty(
            value=initial, units=units, precision=4, read_only=True, record="ai", doc="readback"
        )
        VELO = pvproperty(value=velocity, units=f"{units}/s", record="ao", doc="velocity")
        DMOV = pvproperty(value=1, read_only=True, doc="1 when the motion is done")

        @VAL.putter
        async def VAL(self, instance: Any, value: float) -> float:
            # like the motor record: DMOV drops as soon as a move is asked for
            if not new_equal(float(value), float(self.RBV.value)):
                await self.DMOV.write(0)
            return value

        @RBV.scan(period=MOTOR_PERIOD)
        async def RBV(self, instance: Any, async_lib: Any) -> None:
            target, pos = float(self.VAL.value), float(instance.value)
            step = abs(float(self.VELO.value)) * MOTOR_PERIOD
            if pos != target:
                new = (
                    target if abs(target - pos) <= step else pos + (step if target > pos else -step)
                )
                await instance.write(new)
            done = 1 if new_equal(float(instance.value), target) else 0
            if self.DMOV.value != done:
                await self.DMOV.write(done)

    return Motor


def new_equal(a: float, b: float) -> bool:
    return abs(a - b) < 1e-9


def _long_string(value: str, doc: str, read_only: bool = False) -> Any:
    return pvproperty(
        value=value,
        dtype=ChannelType.CHAR,
        max_length=1024,
        string_encoding="utf-8",
        read_only=read_only,
        doc=doc,
    )


class HDF5Plugin(PVGroup):
    """areaDetector's NDFileHDF5, reduced: each acquisition's frames go to one file."""

    FilePath = _long_string("", "directory of the files (nothing is written while empty)")
    FileName = pvproperty(value="frames", dtype=ChannelType.STRING, doc="file name stem")
    FileNumber = pvproperty(value=1, doc="number of the next file")
    FullFileName_RBV = _long_string("", "full path of the last file closed", read_only=True)
    NumCaptured_RBV = pvproperty(value=0, read_only=True, doc="frames in the last file")


class Detector(PVGroup):
    """An area-detector-like camera: frames count up at 10 Hz while acquiring; when the
    acquisition stops, its frames are written to an HDF5 file as areaDetector does.

    It looks through the phantom (``sim/phantom.py``) at the sample rotation ``smp:rx``
    of each frame: dark frames see nothing (100 counts), flats the open beam (1000),
    projections the object. Pixel (0, 0), outside the object, carries a marker of the
    frame: 1000 x (2 - image_key) + its index in the file."""

    Acquire = pvproperty(
        value=0,
        dtype=ChannelType.ENUM,
        enum_strings=["Done", "Acquire"],
        record="bo",
        doc="1 to acquire",
    )
    AcquireTime = pvproperty(value=0.1, units="s", record="ao", doc="exposure time")
    ArrayCounter_RBV = pvproperty(value=0, read_only=True, doc="frames acquired")
    Temperature = pvproperty(value=-20.0, units="degC", precision=2, read_only=True, doc="sensor")

    ImageKey = pvproperty(value=0, doc="what the frames are: 0 projection, 1 flat, 2 dark")
    HDF1 = SubGroup(HDF5Plugin, prefix="HDF1:", doc="HDF5 file writer")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stamps: list[float] = []
        self._keys: list[int] = []
        self._angles: list[float] = []
        self._acquiring = False

    @Acquire.putter
    async def Acquire(self, instance: Any, value: Any) -> Any:
        self._acquiring = value in (1, "Acquire")  # at once: no frame while the file closes
        if not self._acquiring and self._stamps:
            await self._close_file()
        return value

    async def _close_file(self) -> None:
        stamps, key = self._stamps, self._keys[0] if self._keys else 0
        angles = self._angles
        self._stamps, self._keys, self._angles = [], [], []
        folder = str(self.HDF1.FilePath.value).strip()
        if not folder:
            return
        number = int(self.HDF1.FileNumber.value)
        path = f"{folder}/{self.HDF1.FileName.value}_{number:03d}.h5"
        if key == 2:
            images = np.full((len(stamps), 16, 16), phantom.DARK)
        elif key == 1:
            images = np.full((len(stamps), 16, 16), phantom.FLAT)
        else:
            images = np.stack([phantom.projection(a) for a in angles])
        frames = np.rint(images).astype(np.uint16)
        frames[:, 0, 0] = 1000 * (2 - key) + np.arange(len(stamps))  # the frame's marker
        first = int(self.ArrayCounter_RBV.value) - len(stamps) + 1
        await asyncio.to_thread(write_frames, path, frames, key, stamps, first)
        await self.HDF1.NumCaptured_RBV.write(len(stamps))
        await self.HDF1.FileNumber.write(number + 1)
        await self.HDF1.FullFileName_RBV.write(path)

    @ArrayCounter_RBV.scan(period=0.1)
    async def ArrayCounter_RBV(self, instance: Any, async_lib: Any) -> None:
        if self._acquiring:
            self._stamps.append(time.time())
            self._keys.append(int(self.ImageKey.value))
            self._angles.append(float(self.parent.smp.rx.RBV.value))
            await instance.write(instance.value + 1)

    @Temperature.scan(period=1.0)
    async def Temperature(self, instance: Any, async_lib: Any) -> None:
        await instance.write(-20.0 + random.uniform(0, 0.1))


class Monochromator(PVGroup):
    energy = SubGroup(motor_group("keV", 1.0, 12.0), prefix="energy:", doc="photon energy")
    wavelength = pvproperty(
        value=HC_KEV_ANGSTROM / 12.0,
        units="angstrom",
        precision=5,
        read_only=True,
        doc="wavelength from the energy readback",
    )

    @wavelength.scan(period=MOTOR_PERIOD)
    async def wavelength(self, instance: Any, async_lib: Any) -> None:
        energy = float(self.energy.RBV.value)
        if energy > 0:
            value = HC_KEV_ANGSTROM / energy
            if not new_equal(value, float(instance.value)):
                await instance.write(value)


class SampleStage(PVGroup):
    x = SubGroup(motor_group("mm", 5.0, 0.0), prefix="x:")
    y = SubGroup(motor_group("mm", 5.0, 0.0), prefix="y:")
    z = SubGroup(motor_group("mm", 5.0, 0.0), prefix="z:")
    rx = SubGroup(motor_group("deg", 30.0, 0.0), prefix="rx:")


class Slit(PVGroup):
    hgap = SubGroup(motor_group("mm", 1.0, 1.0), prefix="hgap:")
    vgap = SubGroup(motor_group("mm", 1.0, 0.5), prefix="vgap:")
    hcen = SubGroup(motor_group("mm", 1.0, 0.0), prefix="hcen:")
    vcen = SubGroup(motor_group("mm", 1.0, 0.0), prefix="vcen:")


class Ring(PVGroup):
    current = pvproperty(value=100.0, units="mA", precision=3, read_only=True, doc="beam current")

    @current.scan(period=1.0)
    async def current(self, instance: Any, async_lib: Any) -> None:
        await instance.write(100.0 + random.uniform(-0.05, 0.05))


class SimBeamline(PVGroup):
    __doc__ = __doc__
    smp = SubGroup(SampleStage, prefix="smp:", doc="sample stage")
    s1 = SubGroup(Slit, prefix="s1:", doc="slit 1")
    mono = SubGroup(Monochromator, prefix="mono:", doc="monochromator")
    det = SubGroup(Detector, prefix="det:", doc="detector")
    ring = SubGroup(Ring, prefix="ring:", doc="storage ring")


def main(argv: list[str] | None = None) -> None:
    parser, split_args = template_arg_parser(
        default_prefix="SIM:", desc=textwrap.dedent(__doc__ or ""), argv=argv
    )
    ioc_options, run_options = split_args(parser.parse_args(argv))
    ioc = SimBeamline(**ioc_options)
    run(ioc.pvdb, **run_options)


if __name__ == "__main__":
    main()
