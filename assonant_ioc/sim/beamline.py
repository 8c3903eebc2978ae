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
- ``$(P)saxs:``: a SAXS camera with the same PVs as ``det:`` (silver behenate's rings)
- ``$(P)mca:``: an MCA (``Acquire``, ``PresetReal``, ``Spectrum``, ``CalibOffset``,
  ``CalibSlope``, ``LiveTime``, ``RealTime``); ``$(P)sc:``: counters (``Count``,
  ``Preset``, ``I0``, ``It``, ``If``) through a copper foil at the monochromator's energy
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

from assonant_ioc.sim import phantom, samples
from assonant_ioc.sim.counting import Mca, Scaler
from assonant_ioc.sim.frames import write_frames

#: hc in keV * angstrom
HC_KEV_ANGSTROM = 12.398419843320026
MOTOR_PERIOD = 0.1


def motor_group(units: str, velocity: float, initial: float) -> type[PVGroup]:
    """A motor-like group: VAL, RBV moving toward VAL at VELO units/s, DMOV.

    The motion is continuous: the position at any instant is known (:meth:`position_at`,
    what the camera sees), and RBV posts it at 10 Hz stamped with the instant it was true,
    including the instants the motion starts and ends, as a controller with
    hardware-stamped positions does."""

    class Motor(PVGroup):
        VAL = pvproperty(value=initial, units=units, precision=4, record="ao", doc="setpoint")
        RBV = pvproperty(
            value=initial, units=units, precision=4, read_only=True, record="ai", doc="readback"
        )
        VELO = pvproperty(value=velocity, units=f"{units}/s", record="ao", doc="velocity")
        DMOV = pvproperty(value=1, read_only=True, doc="1 when the motion is done")

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            # the motion: (start time, start position, target, speed); speed 0 at rest
            self.motion = (0.0, initial, initial, 0.0)

        def position_at(self, t: float) -> float:
            start, pos, target, speed = self.motion
            if speed == 0 or t <= start:
                return pos
            travelled = speed * (t - start)
            if travelled >= abs(target - pos):
                return target
            return pos + (travelled if target > pos else -travelled)

        def arrival(self) -> float:
            start, pos, target, speed = self.motion
            return start + abs(target - pos) / speed if speed else start

        @VAL.putter
        async def VAL(self, instance: Any, value: float) -> float:
            now = time.time()
            here = self.position_at(now)
            speed = abs(float(self.VELO.value))
            if new_equal(float(value), here) or speed == 0:
                self.motion = (now, float(value), float(value), 0.0)
                return value
            self.motion = (now, here, float(value), speed)
            # like the motor record: DMOV drops as soon as a move is asked for; the start
            # position is posted with the instant the motion began
            await self.RBV.write(here, timestamp=now)
            await self.DMOV.write(0)
            return value

        @RBV.scan(period=MOTOR_PERIOD)
        async def RBV(self, instance: Any, async_lib: Any) -> None:
            _, _, target, speed = self.motion
            if speed == 0:
                return
            now = time.time()
            if now >= self.arrival():  # arrived: the end of the motion, at its instant
                end = self.arrival()
                self.motion = (end, target, target, 0.0)
                await instance.write(target, timestamp=end)
                await self.DMOV.write(1)
            else:
                await instance.write(self.position_at(now), timestamp=now)

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
    """areaDetector's NDFileHDF5, reduced: each acquisition's frames go to one file.

    ``Capture_RBV`` is 1 from the acquisition's start until its file is closed; the file is
    written under its final name only when complete (``CloseDelay`` s after the last frame,
    a slow file system's lag). ``DropFile`` (a fault to test with) makes the next file be
    announced but never written."""

    FilePath = _long_string("", "directory of the files (nothing is written while empty)")
    FileName = pvproperty(value="frames", dtype=ChannelType.STRING, doc="file name stem")
    FileNumber = pvproperty(value=1, doc="number of the next file")
    FullFileName_RBV = _long_string("", "full path of the last file opened", read_only=True)
    NumCaptured_RBV = pvproperty(value=0, read_only=True, doc="frames captured in the file")
    Capture_RBV = pvproperty(value=0, read_only=True, doc="1 while a file is open")
    WriteFile_RBV = pvproperty(value=0, read_only=True, doc="1 while a file is being written")
    CloseDelay = pvproperty(value=0.0, units="s", doc="seconds between the last frame and close")
    DropFile = pvproperty(value=0, doc="1: the next file is announced but never written")


class Detector(PVGroup):
    """An area-detector-like camera. Each frame is stamped, as areaDetector stamps an
    NDArray, at the end of its exposure; frame i of an acquisition is exposed from
    t0 + i * AcquirePeriod for AcquireTime s. With ``TriggerMode`` Internal, t0 is the
    Acquire command; with External, the start of the next motion of the rotation ``smp:rx``
    (a fly scan's trigger). ``ImageMode`` Multiple stops after ``NumImages`` frames,
    Continuous on Acquire 0. The file plugin opens a file when the acquisition starts
    (``FullFileName_RBV``) and closes it when it stops.

    It looks through the phantom (``sim/phantom.py``) at the sample rotation in the middle
    of each exposure: dark frames see nothing (100 counts), flats the open beam (1000),
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
    AcquirePeriod = pvproperty(value=0.1, units="s", record="ao", doc="time between frames")
    NumImages = pvproperty(value=1, doc="frames of an acquisition in Multiple mode")
    ImageMode = pvproperty(
        value=2,
        dtype=ChannelType.ENUM,
        enum_strings=["Single", "Multiple", "Continuous"],
        record="mbbo",
        doc="Single, Multiple (NumImages) or Continuous",
    )
    TriggerMode = pvproperty(
        value=0,
        dtype=ChannelType.ENUM,
        enum_strings=["Internal", "External"],
        record="mbbo",
        doc="Internal, or External: the rotation's next motion starts the acquisition",
    )
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
        self._task: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None
        self._path = ""

    @Acquire.putter
    async def Acquire(self, instance: Any, value: Any) -> Any:
        start = value in (1, "Acquire")
        if start and not self._acquiring:
            self._acquiring = True
            await self._open_file()
            self._task = asyncio.get_running_loop().create_task(self._frames(time.time()))
        elif not start and self._acquiring:
            self._acquiring = False  # at once: no frame while the file closes
            task, self._task = self._task, None
            if task is not None and task is not asyncio.current_task():
                task.cancel()
            # the put returns at once, as areaDetector's does; the plugin closes the file
            # on its own time (Capture_RBV back to 0 when it is complete)
            closing = (self._stamps, self._keys, self._angles, self._path)
            self._stamps, self._keys, self._angles, self._path = [], [], [], ""
            self._closing = asyncio.get_running_loop().create_task(self._close_file(*closing))
        return value

    async def _frames(self, armed: float) -> None:
        """The acquisition: frames at their exposures' ends, until the mode says stop."""
        rx = self.parent.smp.rx
        if self.TriggerMode.value in (1, "External"):
            while rx.motion[0] <= armed or rx.motion[3] == 0:  # wait for the trigger
                await asyncio.sleep(0.002)
            t0 = rx.motion[0]
        else:
            t0 = armed
        mode = str(self.ImageMode.value)
        count = 1 if mode == "Single" else int(self.NumImages.value) if mode == "Multiple" else 0
        exposure, period = float(self.AcquireTime.value), float(self.AcquirePeriod.value)
        period = max(period, exposure)
        i = 0
        while self._acquiring and (count == 0 or i < count):
            begin = t0 + i * period
            end = begin + exposure
            await asyncio.sleep(max(0.0, end - time.time()))
            if not self._acquiring:
                return
            self._stamps.append(end)
            self._keys.append(int(self.ImageKey.value))
            self._angles.append(rx.position_at(begin + exposure / 2))
            await self.ArrayCounter_RBV.write(self.ArrayCounter_RBV.value + 1)
            await self.HDF1.NumCaptured_RBV.write(len(self._stamps))
            i += 1
        if self._acquiring:  # the mode's last frame: the acquisition ends by itself
            await self.Acquire.write(0)

    async def _open_file(self) -> None:
        self._stamps, self._keys, self._angles = [], [], []
        folder = str(self.HDF1.FilePath.value).strip()
        self._path = ""
        if not folder:
            return
        number = int(self.HDF1.FileNumber.value)
        self._path = f"{folder}/{self.HDF1.FileName.value}_{number:03d}.h5"
        await self.HDF1.FileNumber.write(number + 1)
        await self.HDF1.NumCaptured_RBV.write(0)
        await self.HDF1.Capture_RBV.write(1)
        await self.HDF1.FullFileName_RBV.write(self._path)

    async def _close_file(
        self, stamps: list[float], keys: list[int], angles: list[float], path: str
    ) -> None:
        key = keys[0] if keys else 0
        if not path:
            return
        await self.HDF1.WriteFile_RBV.write(1)
        delay = float(self.HDF1.CloseDelay.value)
        if delay > 0:
            await asyncio.sleep(delay)
        if int(self.HDF1.DropFile.value):
            await self.HDF1.DropFile.write(0)
        elif stamps:
            frames = self.images(key, angles)
            frames[:, 0, 0] = 1000 * (2 - key) + np.arange(len(stamps))  # the frame's marker
            first = int(self.ArrayCounter_RBV.value) - len(stamps) + 1  # ids (approximate)
            await asyncio.to_thread(write_frames, path, frames, key, stamps, first)
        await self.HDF1.WriteFile_RBV.write(0)
        await self.HDF1.Capture_RBV.write(0)

    def images(self, key: int, angles: list[float]) -> np.ndarray:
        """The frames of one file: darks, flats or projections through the phantom at
        ``angles``."""
        if key == 2:
            images = np.full((len(angles), 16, 16), phantom.DARK)
        elif key == 1:
            images = np.full((len(angles), 16, 16), phantom.FLAT)
        else:
            images = np.stack([phantom.projection(a) for a in angles])
        return np.rint(images).astype(np.uint16)

    @Temperature.scan(period=1.0)
    async def Temperature(self, instance: Any, async_lib: Any) -> None:
        await instance.write(-20.0 + random.uniform(0, 0.1))


class SaxsDetector(Detector):
    """A SAXS camera (256 x 256 pixels of 172 um, 500 mm from the sample): the same
    acquisition and file plugin as the camera, looking at silver behenate's rings at the
    monochromator's wavelength (``sim/samples.py``)."""

    def images(self, key: int, angles: list[float]) -> np.ndarray:
        wavelength = HC_KEV_ANGSTROM / float(self.parent.mono.energy.RBV.value)
        start = int(self.ArrayCounter_RBV.value)
        return np.stack([samples.agbeh_frame(wavelength, start + i) for i in range(len(angles))])


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
    saxs = SubGroup(SaxsDetector, prefix="saxs:", doc="SAXS camera (silver behenate)")
    mca = SubGroup(Mca, prefix="mca:", doc="fluorescence detector's MCA (Fe and Cu lines)")
    sc = SubGroup(Scaler, prefix="sc:", doc="counters I0, It, If (a copper foil)")
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
