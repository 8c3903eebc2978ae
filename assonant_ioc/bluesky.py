"""Bluesky: an ophyd-async device for the IOC, and plan stubs for its steps.

Each step is a put with callback: it returns when the IOC has done the step (the snapshot is
durable, the file is written) and raises ``StepRefused`` with the IOC's reason (its
``LastError``) as soon as the IOC refuses it::

    meta = AssonantDevice("MOGNO:META:", name="meta")
    def tomo(detectors):
        yield from assonant.pre(meta, experiment_id="proposal-42", sample="Ti-6Al-4V")
        yield from assonant.start_recording(meta)
        yield from bp.count(detectors, 10)
        yield from assonant.stop_recording(meta)
        yield from assonant.post(meta)
        path = yield from assonant.end_of_experiment(meta)

Needs the ``bluesky`` extra (ophyd-async with Channel Access, and bluesky).

The other way round, a RunEngine's own documents to the same file, in process:
``RE.subscribe(NexusCallback("sim_bluesky", data_dir=...))`` (``assonant_ioc.documents``).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

try:
    import bluesky.plan_stubs as bps
    from aioca import CANothing
    from bluesky.utils import FailedStatus
    from ophyd_async.core import DEFAULT_TIMEOUT, SignalR, SignalRW, StandardReadable
    from ophyd_async.epics.core import CaSignalBackend, epics_signal_r
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"assonant_ioc.bluesky needs the bluesky extra: pip install 'assonant-ioc[bluesky]' ({err})"
    ) from err

from assonant_ioc.documents.callback import NexusCallback

__all__ = [
    "AssonantDevice",
    "NexusCallback",
    "PutFailed",
    "StepRefused",
    "abort",
    "configure",
    "end_of_experiment",
    "post",
    "pre",
    "start_recording",
    "stop_recording",
]

Plan = Generator[Any, Any, Any]


class StepRefused(RuntimeError):
    """The IOC refused a step or a setting; the message is its reason (``LastError``)."""


class PutFailed(RuntimeError):
    """A put with callback completed with a failure status."""


class _Backend(CaSignalBackend):  # type: ignore[type-arg]
    """ophyd-async's Channel Access backend, with a failed put raised as ``PutFailed``.

    aioca raises ``CANothing`` for a failed put, and a ``CANothing`` is false
    (``bool(CANothing) == ok``); the retry loop in ophyd-async's ``SignalW.set`` (stamina,
    tenacity) then takes the failed put for a success. A plain exception keeps it a failure.
    """

    async def put(self, value: Any) -> None:
        try:
            await super().put(value)
        except CANothing as err:
            raise PutFailed(str(err)) from None


def _rw(datatype: type, pv: str, timeout: float | None = DEFAULT_TIMEOUT) -> SignalRW[Any]:
    return SignalRW(_Backend(datatype, pv, pv), timeout=timeout)


class AssonantDevice(StandardReadable):
    """The IOC's commands, settings and status as ophyd-async signals (Channel Access)."""

    def __init__(self, prefix: str, name: str = "") -> None:
        # commands: 1 runs the step (Record:During: 1 starts, 0 stops); a step takes as
        # long as it takes (a big file), so no timeout
        self.snapshot_pre = _rw(int, f"{prefix}Snapshot:Pre", None)
        self.record_during = _rw(int, f"{prefix}Record:During", None)
        self.snapshot_post = _rw(int, f"{prefix}Snapshot:Post", None)
        self.end_of_experiment = _rw(int, f"{prefix}EndOfExperiment", None)
        self.abort = _rw(int, f"{prefix}Abort", None)
        # settings
        self.experiment_id = _rw(str, f"{prefix}ExperimentId")
        self.sample_name = _rw(str, f"{prefix}SampleName")
        self.comment = _rw(str, f"{prefix}Comment")
        self.data_dir = _rw(str, f"{prefix}DataDir")
        self.file_name = _rw(str, f"{prefix}FileName")
        # status
        with self.add_children_as_readables():
            self.state: SignalR[str] = epics_signal_r(str, f"{prefix}State")
            self.last_file: SignalR[str] = epics_signal_r(str, f"{prefix}LastFile")
            self.files_written: SignalR[int] = epics_signal_r(int, f"{prefix}FilesWritten")
        self.status: SignalR[str] = epics_signal_r(str, f"{prefix}Status")
        self.last_error: SignalR[str] = epics_signal_r(str, f"{prefix}LastError")
        self.validation: SignalR[str] = epics_signal_r(str, f"{prefix}Validation")
        super().__init__(name=name)


def _put(device: AssonantDevice, signal: SignalRW[Any], value: Any) -> Plan:
    """Write ``value`` and wait until the IOC has done it; a refusal raises StepRefused."""
    try:
        yield from bps.abs_set(signal, value, wait=True)
    except FailedStatus as err:
        reason = yield from bps.rd(device.last_error, default_value="")
        raise StepRefused(reason or f"{signal.source} refused ({err})") from err


def configure(
    device: AssonantDevice,
    experiment_id: str | None = None,
    sample: str | None = None,
    comment: str | None = None,
    data_dir: str | None = None,
    file_name: str | None = None,
) -> Plan:
    """Set the settings given (the others stay as they are)."""
    settings = [
        (device.experiment_id, experiment_id),
        (device.sample_name, sample),
        (device.comment, comment),
        (device.data_dir, data_dir),
        (device.file_name, file_name),
    ]
    for signal, value in settings:
        if value is not None:
            yield from _put(device, signal, value)


def pre(device: AssonantDevice, **settings: str) -> Plan:
    """The settings given (see ``configure``), then the pre-exposure snapshot."""
    yield from configure(device, **settings)
    yield from _put(device, device.snapshot_pre, 1)


def start_recording(device: AssonantDevice) -> Plan:
    """Record the beamline's PVs during the exposure, until ``stop_recording``."""
    yield from _put(device, device.record_during, 1)


def stop_recording(device: AssonantDevice) -> Plan:
    yield from _put(device, device.record_during, 0)


def post(device: AssonantDevice) -> Plan:
    """The post-exposure snapshot."""
    yield from _put(device, device.snapshot_post, 1)


def end_of_experiment(device: AssonantDevice) -> Plan:
    """Write the NeXus file and queue its event; returns the file's path."""
    yield from _put(device, device.end_of_experiment, 1)
    path = yield from bps.rd(device.last_file, default_value="")
    return path


def abort(device: AssonantDevice) -> Plan:
    """Discard the experiment in progress (nothing is written)."""
    yield from _put(device, device.abort, 1)
