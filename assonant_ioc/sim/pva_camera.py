"""A simulated camera publishing its frames over PVAccess, as areaDetector's ``NDPluginPva``
does: each frame an NTNDArray with its ``uniqueId``, ``dataTimeStamp`` and NDAttributes,
and a rotation stage whose angle is posted over PVA with each frame.

- ``{P}cam:Pva1:Image`` (NTNDArray, uint16): the frames. Attributes of each frame:
  ``SampleRot`` (the rotation angle, deg, when the frame was exposed), ``ExposureCounter``
  (frames exposed since the IOC started), ``image_key`` (0 projection, 1 flat, 2 dark).
- ``{P}cam:Acquire`` (1: expose ``NumImages`` frames, ``AcquireTime`` s apart; 0: stop),
  ``{P}cam:NumImages``, ``{P}cam:AcquireTime``, ``{P}cam:ImageKey``, ``{P}cam:StartAngle``,
  ``{P}cam:EndAngle`` (the rotation across the acquisition) and ``{P}cam:SkipIds`` (the
  next frame's ``uniqueId`` jumps by that many: frames a real camera would drop, for tests).
- ``{P}rot`` (NTScalar double, deg): the rotation stage, posted as each frame is exposed.

What the camera sees is :mod:`assonant_ioc.sim.phantom` at the frame's angle (a flat field
for image key 1, the dark level for 2), ``size`` pixels square (``--size``: 1024 gives the
1 Mpixel frames of the bench).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from assonant_ioc.sim import phantom

#: the writable settings and their initial values
SETTINGS = {
    "Acquire": 0,
    "NumImages": 10,
    "AcquireTime": 0.02,
    "ImageKey": 0,
    "StartAngle": 0.0,
    "EndAngle": 180.0,
    "SkipIds": 0,
}


def frame_value(image: np.ndarray, unique_id: int, t: float, attributes: dict[str, Any]) -> Any:
    """An NTNDArray of ``image`` (rows, columns) as NDPluginPva posts it."""
    from p4p.nt import NTNDArray

    value = NTNDArray().wrap(image, attrib=attributes, timestamp=t)
    secs = int(t)
    value["uniqueId"] = unique_id
    value["dataTimeStamp.secondsPastEpoch"] = secs
    value["dataTimeStamp.nanoseconds"] = int((t - secs) * 1e9)
    return value


class Camera:
    """The camera's PVs (p4p SharedPVs) and the thread that exposes frames."""

    def __init__(self, prefix: str, size: int = phantom.SIZE) -> None:
        from p4p.nt import NTScalar
        from p4p.server.thread import SharedPV

        self.size = size
        now = time.time()
        self.image = SharedPV(initial=frame_value(np.zeros((size, size), np.uint16), 0, now, {}))
        self.rot = SharedPV(
            nt=NTScalar("d", display=True), initial={"value": 0.0, "display.units": "deg"}
        )
        self.settings: dict[str, Any] = dict(SETTINGS)
        self.pvs: dict[str, Any] = {f"{prefix}cam:Pva1:Image": self.image, f"{prefix}rot": self.rot}
        for name, initial in SETTINGS.items():
            kind = "d" if isinstance(initial, float) else "i"
            pv = SharedPV(nt=NTScalar(kind), initial=initial)
            pv.put(self._putter(name))
            self.pvs[f"{prefix}cam:{name}"] = pv
        self.unique_id = 0
        self.exposed = 0
        self._go = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sim-pva-camera", daemon=True)

    def _putter(self, name: str) -> Any:
        def put(pv: Any, op: Any) -> None:
            value = op.value().raw["value"]
            self.settings[name] = value
            pv.post(value)
            if name == "Acquire":
                (self._go.set if value else self._go.clear)()
            op.done()

        return put

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._go.set()
        self._thread.join(5)

    def _picture(self, angle: float, key: int) -> np.ndarray:
        if key == 1:
            level = np.full((self.size, self.size), phantom.FLAT)
        elif key == 2:
            level = np.full((self.size, self.size), phantom.DARK)
        else:
            level = phantom.projection(angle, self.size)
        return np.round(level).astype(np.uint16)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._go.wait()
            if self._stop.is_set():
                return
            n = int(self.settings["NumImages"])
            first, last = float(self.settings["StartAngle"]), float(self.settings["EndAngle"])
            period = float(self.settings["AcquireTime"])
            key = int(self.settings["ImageKey"])
            start = time.monotonic()
            for i in range(n):
                if not self._go.is_set() or self._stop.is_set():
                    break
                angle = first + (last - first) * i / max(n - 1, 1)
                self.expose(angle, key)
                wait = start + (i + 1) * period - time.monotonic()
                if wait > 0:
                    self._stop.wait(wait)
            self._go.clear()
            self.settings["Acquire"] = 0
            self.pvs_by_setting("Acquire").post(0)

    def pvs_by_setting(self, name: str) -> Any:
        return next(pv for key, pv in self.pvs.items() if key.endswith(f"cam:{name}"))

    def expose(self, angle: float, key: int = 0) -> None:
        """One frame at ``angle``: the stage's angle posted, then the frame."""
        skip = int(self.settings["SkipIds"])
        if skip:
            self.settings["SkipIds"] = 0
            self.pvs_by_setting("SkipIds").post(0)
        self.unique_id += 1 + skip
        self.exposed += 1
        now = time.time()
        self.rot.post(angle, timestamp=now)
        attributes = {"SampleRot": angle, "ExposureCounter": self.exposed, "image_key": key}
        self.image.post(frame_value(self._picture(angle, key), self.unique_id, now, attributes))
