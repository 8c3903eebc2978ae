"""Driving the simulated camera and the sample's rotation as a tomography scan does, over CA,
waiting on the PVs (never on the clock)."""

from __future__ import annotations

from typing import Any

from assonant_ioc.sim import procs


def acquire(client: Any, BL: str, key: int, frames: int = 2) -> None:
    """One acquisition of ``frames`` frames with image key ``key`` (2 dark, 1 flat): the camera
    writes them to one file when it stops (``Capture_RBV`` back to 0)."""
    counted = client.get(f"{BL}det:ArrayCounter_RBV")
    client.put(f"{BL}det:ImageKey", key)
    client.put(f"{BL}det:Acquire", 1)
    procs.wait_until(
        lambda: client.get(f"{BL}det:ArrayCounter_RBV") >= counted + frames, 10, "frames"
    )
    client.put(f"{BL}det:Acquire", 0)
    procs.wait_until(lambda: client.get(f"{BL}det:HDF1:Capture_RBV") == 0, 10, "file closed")


def scan(client: Any, BL: str, P: str, turn: float) -> None:
    """The recording: projections (image key 0) while the sample turns to ``turn`` deg
    (30 deg/s), then the camera's file closed and the recording stopped."""
    files_before = client.get(f"{BL}det:HDF1:FileNumber")
    client.put(f"{P}Record:During", 1)
    client.put(f"{BL}det:ImageKey", 0)
    client.put(f"{BL}det:Acquire", 1)
    client.put(f"{BL}smp:rx:VAL", turn)
    limit = 10 + abs(turn) / 10
    procs.wait_until(lambda: abs(client.get(f"{BL}smp:rx:RBV") - turn) < 1e-6, limit, "rotation")
    procs.wait_until(lambda: client.get(f"{BL}smp:rx:DMOV") == 1, limit, "rotation done")
    client.put(f"{BL}det:Acquire", 0)
    procs.wait_until(
        lambda: client.get(f"{BL}det:HDF1:FileNumber") == files_before + 1, 10, "scan file"
    )
    procs.wait_until(lambda: client.get(f"{BL}det:HDF1:Capture_RBV") == 0, 10, "file closed")
    client.put(f"{P}Record:During", 0)


def sweep(client: Any, BL: str, P: str, stop: float, images: int) -> None:
    """A fly scan as MX and fast tomography run it: the camera armed (external trigger,
    ``images`` frames) starts when the rotation does, one frame every step while the sample
    turns from where it is to ``stop`` (30 deg/s); the recording spans it."""
    start = client.get(f"{BL}smp:rx:RBV")
    period = abs(stop - start) / 30.0 / images
    files_before = client.get(f"{BL}det:HDF1:FileNumber")
    for pv, value in (
        ("TriggerMode", 1),
        ("ImageMode", 1),
        ("NumImages", images),
        ("AcquireTime", period),
        ("AcquirePeriod", period),
        ("ImageKey", 0),
    ):
        client.put(f"{BL}det:{pv}", value)
    client.put(f"{P}Record:During", 1)
    client.put(f"{BL}det:Acquire", 1)  # armed: waits for the motion
    client.put(f"{BL}smp:rx:VAL", stop)
    limit = 10 + abs(stop - start) / 10
    procs.wait_until(lambda: client.get(f"{BL}smp:rx:DMOV") == 1, limit, "rotation done")
    procs.wait_until(
        lambda: client.get(f"{BL}det:HDF1:FileNumber") == files_before + 1, 10, "sweep file"
    )
    procs.wait_until(lambda: client.get(f"{BL}det:HDF1:Capture_RBV") == 0, 10, "file closed")
    client.put(f"{P}Record:During", 0)
    for pv, value in (("TriggerMode", 0), ("ImageMode", 2), ("AcquireTime", 0.1)):
        client.put(f"{BL}det:{pv}", value)
    client.put(f"{BL}det:AcquirePeriod", 0.1)
