"""Bluesky runs of ophyd-async's simulated devices, as the tests and the bench make them:
a tomography plan (darks, flats, projections over a rotation, the stage as baseline) and an
MX rotation plan (the rotation moving while the detector takes images, its readback
monitored). The config that maps them is the shipped ``sim_bluesky``."""

from __future__ import annotations

from collections.abc import Callable, Generator
from pathlib import Path, PurePath
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky import RunEngine
from ophyd_async.core import StaticPathProvider, TriggerInfo, UUIDFilenameProvider, init_devices
from ophyd_async.sim import PatternGenerator, SimBlobDetector, SimMotor, SimStage

Doc = tuple[str, dict[str, Any]]

#: each frame's exposure (s): the sim detector writes a frame this long after its trigger;
#: the config sim_bluesky says the same (the detector's count_time)
EXPOSURE = 0.15


class Devices:
    def __init__(self, frames_dir: Path) -> None:
        frames_dir.mkdir(parents=True, exist_ok=True)
        self.engine = RunEngine(call_returns_result=False)  # its event loop connects them
        pattern = PatternGenerator()
        with init_devices():
            self.rot = SimMotor()
            self.stage = SimStage(pattern)
            self.det = SimBlobDetector(
                StaticPathProvider(UUIDFilenameProvider(), PurePath(frames_dir)), pattern
            )
        self.rot.set_name("rot")
        self.stage.set_name("stage")
        self.det.set_name("det")


def tomo(d: Devices, darks: int, flats: int, angles: list[float], **md: Any) -> Generator[Any]:
    """Darks (stream "darks"), flats ("flats"), then one projection per angle (primary),
    the rotation read with each; the stage is the baseline (read at start and stop)."""

    @bpp.baseline_decorator([d.stage])
    @bpp.stage_decorator([d.det])
    @bpp.run_decorator(md={"definition": "NXtomo", **md})
    def inner() -> Generator[Any]:
        yield from bps.prepare(d.det, TriggerInfo(livetime=EXPOSURE), wait=True)
        for _ in range(darks):
            yield from bps.trigger_and_read([d.det], name="darks")
        for _ in range(flats):
            yield from bps.trigger_and_read([d.det], name="flats")
        for angle in angles:
            yield from bps.mv(d.rot, angle)
            yield from bps.trigger_and_read([d.det, d.rot])

    yield from bps.mv(d.rot.velocity, 1000)  # a step takes no time
    yield from inner()


def mx(d: Devices, start: float, end: float, images: int, **md: Any) -> Generator[Any]:
    """A rotation from ``start`` to ``end`` at constant speed (0.3 s an image) while the
    detector takes ``images`` images, each triggered as the rotation reaches its start angle
    (a position-triggered sweep, as a fly scan's hardware would); the rotation's readback
    monitored through the sweep."""
    step = (end - start) / images
    yield from bps.mv(d.rot.velocity, 1000, d.rot.acceleration_time, 0.001)
    yield from bps.mv(d.rot, start - step / 2)  # up to speed before the first image
    yield from bps.mv(d.rot.velocity, abs(step) / 0.3)

    @bpp.baseline_decorator([d.stage])
    @bpp.monitor_during_decorator([d.rot.user_readback])
    @bpp.stage_decorator([d.det])
    @bpp.run_decorator(md={"definition": "NXmx", **md})
    def inner() -> Generator[Any]:
        yield from bps.prepare(d.det, TriggerInfo(livetime=EXPOSURE), wait=True)
        yield from bps.abs_set(d.rot, end + step / 2, group="sweep")
        for i in range(images):
            at = start + i * step
            while True:
                position = yield from bps.rd(d.rot.user_readback)
                if (position - at) * step >= 0:
                    break
                yield from bps.sleep(0.002)
            yield from bps.trigger_and_read([d.det])
        yield from bps.wait(group="sweep")

    yield from inner()


def run(
    d: Devices, plan: Generator[Any], *callbacks: Callable[[str, dict[str, Any]], Any]
) -> list[Doc]:
    """Run ``plan`` with ``callbacks`` subscribed; returns its documents."""
    docs: list[Doc] = []
    tokens = [d.engine.subscribe(lambda name, doc: docs.append((name, doc)))]
    tokens += [d.engine.subscribe(cb) for cb in callbacks]
    try:
        d.engine(plan)
    finally:
        for token in tokens:
            d.engine.unsubscribe(token)
    return docs
