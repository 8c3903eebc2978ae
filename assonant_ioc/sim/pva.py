"""The simulated beamline's PVAccess devices (p4p's SharedPV), as an EPICS 7 beamline has
them beside its CA IOCs: normative types with units, limits and alarms.

- ``{P}temp`` (NTScalar double, K): a sample temperature ramping 290 -> 330 K and back at
  10 Hz, its alarm HIGH above 315 K and HIHI above 325 K (MINOR, MAJOR), as QSRV says them.
- ``{P}mode`` (NTEnum Off, Low, High): the heater's mode, one step a second.
- ``{P}spectrum`` (NTScalarArray double, 16 points, counts): a spectrum at 5 Hz.
- a camera publishing its frames as NDPluginPva does, and its rotation stage
  (:mod:`assonant_ioc.sim.pva_camera`: ``{P}cam:Pva1:Image``, ``{P}rot``).

``python -m assonant_ioc.sim.pva --prefix P`` serves them on the addresses and ports the
environment gives (``EPICS_PVAS_*``); it prints ``ready`` once they are served.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from typing import Any

import numpy as np

from assonant_ioc.sim.pva_camera import Camera

HIGH, HIHI = 315.0, 325.0


def _temperature(t: float) -> float:
    """A triangle 290 -> 330 -> 290 K over 8 s."""
    phase = (t % 8.0) / 4.0
    return 290.0 + 40.0 * (phase if phase <= 1.0 else 2.0 - phase)


def _alarm(value: float) -> dict[str, Any]:
    if value > HIHI:
        return {"alarm.severity": 2, "alarm.status": 3, "alarm.message": "HIHI"}
    if value > HIGH:
        return {"alarm.severity": 1, "alarm.status": 3, "alarm.message": "HIGH"}
    return {"alarm.severity": 0, "alarm.status": 0, "alarm.message": "NO_ALARM"}


def _stamp(t: float) -> dict[str, int]:
    secs = int(t)
    return {"timeStamp.secondsPastEpoch": secs, "timeStamp.nanoseconds": int((t - secs) * 1e9)}


class Devices:
    """The PVs, and the thread that moves them."""

    def __init__(self, prefix: str) -> None:
        from p4p.nt import NTEnum, NTScalar
        from p4p.server.thread import SharedPV

        now = time.time()
        self.temp = SharedPV(
            nt=NTScalar("d", display=True, control=True, valueAlarm=True),
            initial={
                "value": _temperature(now),
                "display.units": "K",
                "valueAlarm.highAlarmLimit": HIHI,
                "valueAlarm.highWarningLimit": HIGH,
                **_alarm(_temperature(now)),
                **_stamp(now),
            },
        )
        self.mode = SharedPV(nt=NTEnum(), initial={"index": 0, "choices": ["Off", "Low", "High"]})
        self.spectrum = SharedPV(
            nt=NTScalar("ad", display=True),
            initial={"value": np.zeros(16), "display.units": "counts", **_stamp(now)},
        )
        self.pvs = {f"{prefix}temp": self.temp, f"{prefix}mode": self.mode}
        self.pvs[f"{prefix}spectrum"] = self.spectrum
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sim-pva", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        tick = 0
        while not self._stop.wait(0.1):
            tick += 1
            now = time.time()
            value = _temperature(now)
            self.temp.post({"value": value, **_alarm(value), **_stamp(now)})
            if tick % 2 == 0:
                counts = 100.0 + 50.0 * np.sin(np.arange(16) / 2.0 + tick / 10.0)
                self.spectrum.post({"value": np.round(counts), **_stamp(now)})
            if tick % 10 == 0:
                index = (tick // 10) % 3
                self.mode.post({"value.index": index, **_stamp(now)})


def main(argv: list[str] | None = None) -> None:
    from p4p.server import Server

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--camera-size", type=int, default=16, help="frame side, pixels")
    args = parser.parse_args(argv)
    devices = Devices(args.prefix)
    camera = Camera(args.prefix, args.camera_size)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with Server(providers=[{**devices.pvs, **camera.pvs}]):
        devices.start()
        camera.start()
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        stop.wait()
        camera.stop()
        devices.stop()


if __name__ == "__main__":
    main()
