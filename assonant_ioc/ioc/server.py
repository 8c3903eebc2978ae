"""assonant-ioc: capture beamline metadata per acquisition moment; write NeXus; announce on Kafka.

With P the prefix. Commands (``caput -c`` completes when the step is done):

- ``$(P)Snapshot:Pre`` = 1       capture the pre-exposure snapshot
- ``$(P)Record:During`` = 1 / 0  start / stop recording during exposure
- ``$(P)Snapshot:Post`` = 1      capture the post-exposure snapshot
- ``$(P)EndOfExperiment`` = 1    write the file, then send the event
- ``$(P)Abort`` = 1              discard the experiment in progress

Settings (char waveforms, any length): ``ExperimentId``, ``SampleName``,
``Comment``, ``DataDir``, ``FileName`` (template with {beamline} {experiment_id}
{sample} {counter} {date} {time}); all but Comment survive a restart (--autosave).

Status: ``State`` (Idle, Collecting, Recording, Writing, Fault), ``Status``,
``LastFile``, ``LastError``, ``Validation``, ``FilesWritten``, ``PVsConnected``, ``PVsTotal``,
``KafkaConnected``, ``Heartbeat``. Health: ``Uptime``, ``StartTime``,
``Version``, ``MemUsed``, ``CPULoad``, ``UpdateRate``.

A command that makes no sense in the current state is refused: the put fails
and ``Status``/``LastError`` say why.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import os
import textwrap
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from caproto import ChannelType
from caproto.server import PVGroup, pvproperty, run, template_arg_parser

import assonant_ioc
from assonant_ioc.config import BeamlineConfig, load_config
from assonant_ioc.config.spec import check_file_name_template, render_file_name
from assonant_ioc.errors import AssonantError, CommandRefused, ConfigError, SendFailed, WriteFailed
from assonant_ioc.events.kafka import EventSender
from assonant_ioc.events.message import file_written_event
from assonant_ioc.ioc.autosave import Autosave, default_path
from assonant_ioc.ioc.health import CpuLoad, rss_mb
from assonant_ioc.model.components import Experiment, Moment
from assonant_ioc.model.state import Command, State, StateMachine
from assonant_ioc.monitor import PVMonitor
from assonant_ioc.nexus import write_experiment
from assonant_ioc.nexus.validate import validate
from assonant_ioc.snapshots import Captured, FileNames, Recording, assemble

log = logging.getLogger(__name__)

STATE_STRINGS = [s.label for s in State]
KAFKA_RETRY_PERIOD = 5.0


def _long_string(
    name: str, value: str, doc: str, read_only: bool = False, length: int = 1024
) -> Any:
    """A char waveform presented as a string: paths and messages longer than 40 characters."""
    return pvproperty(
        name=name,
        value=value,
        dtype=ChannelType.CHAR,
        max_length=length,
        string_encoding="utf-8",
        read_only=read_only,
        doc=doc,
    )


def _sha256(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return path.stat().st_size, digest.hexdigest()


class AssonantIOC(PVGroup):
    __doc__ = __doc__

    # -- commands -------------------------------------------------------------------------
    snapshot_pre = pvproperty(name="Snapshot:Pre", value=0, doc="1: capture pre-exposure snapshot")
    record_during = pvproperty(
        name="Record:During", value=0, doc="1: start, 0: stop recording during exposure"
    )
    snapshot_post = pvproperty(
        name="Snapshot:Post", value=0, doc="1: capture post-exposure snapshot"
    )
    end_of_experiment = pvproperty(
        name="EndOfExperiment", value=0, doc="1: write the NeXus file and send the Kafka event"
    )
    abort = pvproperty(name="Abort", value=0, doc="1: discard the experiment in progress")

    # -- settings -------------------------------------------------------------------------
    experiment_id = _long_string(
        "ExperimentId", "", "experiment id (Kafka key); empty: one is made up", length=256
    )
    sample_name = _long_string(
        "SampleName", "", "sample name, written to NXsample/name", length=256
    )
    comment = _long_string(
        "Comment", "", "operator's note, written to each entry's experiment_description"
    )
    data_dir = _long_string("DataDir", "", "absolute directory the files go to")
    file_name = _long_string("FileName", "", "file name template", length=256)

    # -- status ---------------------------------------------------------------------------
    state = pvproperty(
        name="State",
        value=STATE_STRINGS[0],
        dtype=ChannelType.ENUM,
        enum_strings=STATE_STRINGS,
        record="mbbi",
        read_only=True,
        doc="Idle, Collecting, Recording, Writing, Fault",
    )
    status = _long_string("Status", "Starting", "what happened last", read_only=True)
    last_file = _long_string("LastFile", "", "full path of the last file written", read_only=True)
    last_error = _long_string("LastError", "", "the last error or refusal", read_only=True)
    validation = _long_string(
        "Validation", "", "what the NeXus validators found in the last file", read_only=True
    )
    files_written = pvproperty(name="FilesWritten", value=0, read_only=True, doc="files written")
    pvs_connected = pvproperty(name="PVsConnected", value=0, read_only=True, doc="PVs connected")
    pvs_total = pvproperty(name="PVsTotal", value=0, read_only=True, doc="PVs configured")
    kafka_connected = pvproperty(
        name="KafkaConnected",
        value="No",
        dtype=ChannelType.ENUM,
        enum_strings=["No", "Yes"],
        record="bi",
        read_only=True,
        doc="the Kafka broker answered the last attempt",
    )
    heartbeat = pvproperty(name="Heartbeat", value=0, read_only=True, doc="+1 every second")

    # -- health (devIocStats style) ------------------------------------------------------
    uptime = pvproperty(name="Uptime", value=0, units="s", read_only=True, doc="seconds running")
    start_time = pvproperty(
        name="StartTime",
        value="",
        dtype=ChannelType.STRING,
        read_only=True,
        doc="when the IOC started (UTC)",
    )
    version = pvproperty(
        name="Version",
        value=assonant_ioc.__version__,
        dtype=ChannelType.STRING,
        read_only=True,
        doc="assonant-ioc version",
    )
    mem_used = pvproperty(
        name="MemUsed",
        value=0.0,
        units="MB",
        precision=1,
        read_only=True,
        doc="resident memory of the IOC process",
    )
    update_rate = pvproperty(
        name="UpdateRate",
        value=0.0,
        units="1/s",
        precision=0,
        read_only=True,
        doc="beamline PV updates received per second",
    )
    cpu_load = pvproperty(
        name="CPULoad",
        value=0.0,
        units="%",
        precision=1,
        read_only=True,
        doc="CPU used by the IOC process over the last second",
    )

    #: The PV interface by role (the panel generator and the docs read these).
    COMMANDS = ("Snapshot:Pre", "Record:During", "Snapshot:Post", "EndOfExperiment", "Abort")
    SETTINGS = ("ExperimentId", "SampleName", "Comment", "DataDir", "FileName")
    STATUS = (
        "State",
        "Status",
        "LastFile",
        "LastError",
        "Validation",
        "FilesWritten",
        "PVsConnected",
        "PVsTotal",
        "KafkaConnected",
        "Heartbeat",
    )
    HEALTH = ("Uptime", "StartTime", "Version", "MemUsed", "CPULoad", "UpdateRate")
    #: Settings kept by autosave, by PV name.
    AUTOSAVED = ("ExperimentId", "SampleName", "DataDir", "FileName")

    def __init__(
        self,
        *args: Any,
        config: BeamlineConfig,
        sender: EventSender | None,
        monitor: PVMonitor | None = None,
        autosave: Autosave | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.autosave = autosave
        self._restoring = False
        self._started = time.time()
        self._cpu = CpuLoad()
        self._last_updates = (0, time.monotonic())
        self._callback_errors = 0
        self.config = config
        self.sender = sender
        self.monitor = monitor or PVMonitor(config.pvs())
        self.machine = StateMachine()
        self._captures: dict[Moment, Captured] = {}
        self._moment_pvs = {m: config.pvs(m) for m in Moment}
        self._recording: Recording | None = None
        self._frame_files: FileNames | None = None
        self._current_id = ""
        self._current_sample = ""
        self._counter = 0
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- helpers ------------------------------------------------------------------------------
    async def _say(self, message: str) -> None:
        log.info("%s", message)
        await self.status.write(message[:1023])

    async def _error(self, message: str) -> None:
        """A refusal or an error: logged, and shown on Status and LastError."""
        log.warning("%s", message)
        await self.status.write(message[:1023])
        await self.last_error.write(message[:1023])

    async def _set_state(self, state: State) -> None:
        await self.state.write(state.label)

    async def _command(self, cmd: Command) -> None:
        """Apply ``cmd`` to the state machine or refuse it (the put then fails)."""
        try:
            new = self.machine.apply(cmd)
        except CommandRefused as err:
            await self._error(str(err))
            raise
        await self._set_state(new)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _check_one(self, value: Any, pv: str) -> None:
        if value != 1:
            msg = f"{pv} refused: write 1 to run the command, not {value!r}"
            await self._error(msg)
            raise CommandRefused(msg)

    def _begin_experiment(self, now: float) -> None:
        if self.machine.state is State.IDLE:
            self._captures.clear()
            self._stop_frame_files()
            frame_pvs = self.config.frame_pvs()
            if frame_pvs:  # from now on, each file a detector closes belongs to this experiment
                self._frame_files = FileNames(frame_pvs)
                self.monitor.add_sink(self._frame_files, frame_pvs.values())
            self._current_id = str(self.experiment_id.value).strip() or time.strftime(
                f"{self.config.beamline}-%Y%m%dT%H%M%S", time.gmtime(now)
            )
            self._current_sample = str(self.sample_name.value)

    def _stop_frame_files(self) -> None:
        """Stop following the detectors' files (the experiment is written or dropped)."""
        sink, self._frame_files = self._frame_files, None
        if sink is not None:
            self.monitor.remove_sink(sink)

    def _snapshot(self, moment: Moment, now: float) -> int:
        """Keep the latest readings (a dict copy); returns how many of the moment's PVs."""
        self._captures[moment] = Captured(moment, self.monitor.latest(), now, now)
        return len(self._moment_pvs[moment])

    # -- startup / periodic ---------------------------------------------------------------
    @status.startup
    async def status(self, instance: Any, async_lib: Any) -> None:
        await self.start_time.write(time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(self._started)))
        await self._restore()
        await self.pvs_total.write(self.monitor.total)
        await asyncio.to_thread(self.monitor.start)
        if self.sender is not None:
            self._spawn(self._kafka_loop())
        if self.status.value == "Starting":  # a refusal during start-up stays on show
            await self._say(f"Idle: {self.config.beamline}, {self.monitor.total} PVs")

    @status.shutdown
    async def status(self, instance: Any, async_lib: Any) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self.sender is not None:
            await self.sender.close()
        await asyncio.to_thread(self.monitor.stop)

    @heartbeat.scan(period=1.0)
    async def heartbeat(self, instance: Any, async_lib: Any) -> None:
        await instance.write((instance.value + 1) % 2**31)
        await self.uptime.write(int(time.time() - self._started))
        await self.mem_used.write(rss_mb())
        await self.cpu_load.write(self._cpu.sample())
        updates, now = self.monitor.updates, time.monotonic()
        rate = (updates - self._last_updates[0]) / max(now - self._last_updates[1], 1e-3)
        self._last_updates = (updates, now)
        await self.update_rate.write(rate)
        errors = self.monitor.callback_errors
        if errors != self._callback_errors:  # counted in libca's threads, reported here
            self._callback_errors = errors
            await self._error(f"{errors} monitor callback error(s) so far; see the IOC log")
        connected = self.monitor.connected_count
        if connected != self.pvs_connected.value:
            await self.pvs_connected.write(connected)
        kafka = "Yes" if self.sender is not None and self.sender.connected else "No"
        if kafka != self.kafka_connected.value:
            await self.kafka_connected.write(kafka)

    async def _kafka_loop(self) -> None:
        assert self.sender is not None
        while True:
            try:
                if self.sender.backlog:
                    left = await self.sender.flush()
                    if not left:
                        await self._say("Kafka: delayed events delivered")
                elif not self.sender.connected:
                    await self.sender.connect()
            except Exception:
                log.exception("Kafka retry loop")
            await asyncio.sleep(KAFKA_RETRY_PERIOD)

    # -- commands -----------------------------------------------------------------------------
    @snapshot_pre.putter
    async def snapshot_pre(self, instance: Any, value: Any) -> int:
        await self._check_one(value, "Snapshot:Pre")
        now = time.time()
        self._begin_experiment(now)
        await self._command(Command.SNAPSHOT_PRE)
        count = self._snapshot(Moment.PRE, now)
        await self._say(f"{self._current_id}: pre-exposure snapshot of {count} PVs")
        return 0

    @record_during.putter
    async def record_during(self, instance: Any, value: Any) -> int:
        now = time.time()
        if value == 1:
            self._begin_experiment(now)
            await self._command(Command.RECORD_START)
            pvs = self._moment_pvs[Moment.DURING]
            self._recording = Recording(pvs, now)
            self.monitor.add_sink(self._recording, pvs)
            await self._say(f"{self._current_id}: recording {len(pvs)} PVs")
            return 1
        if value == 0:
            await self._command(Command.RECORD_STOP)
            recording, self._recording = self._recording, None
            assert recording is not None
            recording.close(now)
            await asyncio.sleep(
                Recording.GRACE_S
            )  # updates stamped before the stop may be in flight
            self.monitor.remove_sink(recording)
            series = recording.stop()
            self._captures[Moment.DURING] = Captured(Moment.DURING, series, recording.start, now)
            await self._say(
                f"{self._current_id}: recorded {sum(len(s) for s in series.values())} readings "
                f"of {len(series)} PVs"
            )
            return 0
        msg = f"Record:During refused: write 1 (start) or 0 (stop), not {value!r}"
        await self._error(msg)
        raise CommandRefused(msg)

    @snapshot_post.putter
    async def snapshot_post(self, instance: Any, value: Any) -> int:
        await self._check_one(value, "Snapshot:Post")
        now = time.time()
        await self._command(Command.SNAPSHOT_POST)
        count = self._snapshot(Moment.POST, now)
        await self._say(f"{self._current_id}: post-exposure snapshot of {count} PVs")
        return 0

    @end_of_experiment.putter
    async def end_of_experiment(self, instance: Any, value: Any) -> int:
        await self._check_one(value, "EndOfExperiment")
        await self._command(Command.END_OF_EXPERIMENT)
        await self._say(f"{self._current_id}: writing")
        captures = list(self._captures.values())
        start = min(c.start for c in captures)
        try:
            path, counter = self._next_path(start)
            experiment, size, sha256 = await asyncio.to_thread(
                self._write, captures, path, str(self.comment.value)
            )
        except (WriteFailed, OSError, AssonantError) as err:
            self.machine.apply(Command.WRITE_FAILED)
            await self._set_state(State.FAULT)
            await self._error(
                f"{self._current_id}: write failed, experiment kept "
                f"(fix it and EndOfExperiment again, or Abort): {err}"
            )
            raise
        written_at = time.time()
        self._counter = counter
        self._persist()
        self.machine.apply(Command.WRITE_DONE)
        self._captures.clear()
        self._stop_frame_files()
        await self.last_file.write(str(path))
        await self.files_written.write(self.files_written.value + 1)
        await self._set_state(State.IDLE)
        await self._say(f"{experiment.experiment_id}: wrote {path}")
        self._spawn(self._validate_and_send(experiment, path, size, sha256, written_at))
        return 0

    async def _validate_and_send(
        self, experiment: Experiment, path: Path, size: int, sha256: str, written_at: float
    ) -> None:
        """After the put has completed: validate the file (never fatal), then the event."""
        report = None
        if self.config.validate:
            try:
                report = await asyncio.to_thread(validate, path)
                await self.validation.write(f"{path.name}: {report.summary()}"[:1023])
                log.info("%s: %s", path, report.summary())
            except Exception as err:  # a validator's failure never loses the file or event
                log.exception("validation of %s failed", path)
                await self._error(f"{path.name}: validation failed: {err}")
        if self.sender is not None:
            event = file_written_event(
                experiment,
                path,
                size,
                sha256,
                written_at,
                report.as_event() if report is not None else None,
            )
            await self._send(experiment.experiment_id, event)

    async def _send(self, key: str, event: dict[str, Any]) -> None:
        assert self.sender is not None
        try:
            await self.sender.send(key, event)
            await self._say(f"{key}: event sent for {event['file_path']}")
        except SendFailed as err:
            await self._error(f"{key}: {err}; the event is kept and will be sent again")

    @abort.putter
    async def abort(self, instance: Any, value: Any) -> int:
        await self._check_one(value, "Abort")
        await self._command(Command.ABORT)
        if self._recording is not None:
            self.monitor.remove_sink(self._recording)
            self._recording = None
        self._captures.clear()
        self._stop_frame_files()
        await self.record_during.write(0, verify_value=False)  # no putter: not a command
        await self._say(f"{self._current_id}: aborted, nothing written")
        return 0

    # -- settings -----------------------------------------------------------------------------
    @experiment_id.putter
    async def experiment_id(self, instance: Any, value: Any) -> str:
        text = str(value).strip()
        if "/" in text or "\\" in text or any(ord(c) < 32 for c in text):
            msg = f"ExperimentId refused: {text!r} has a path separator or control character"
            await self._error(msg)
            raise ValueError(msg)
        self._persist(ExperimentId=text)
        return text

    @data_dir.putter
    async def data_dir(self, instance: Any, value: Any) -> str:
        text = str(value).strip()
        if not os.path.isabs(text):
            msg = f"DataDir refused: {text!r} is not an absolute path"
            await self._error(msg)
            raise ValueError(msg)
        self._persist(DataDir=text)
        return text

    @file_name.putter
    async def file_name(self, instance: Any, value: Any) -> str:
        text = str(value).strip()
        why = check_file_name_template(text)
        if why:
            msg = f"FileName refused: {why}"
            await self._error(msg)
            raise ValueError(msg)
        self._persist(FileName=text)
        return text

    @sample_name.putter
    async def sample_name(self, instance: Any, value: Any) -> str:
        text = str(value)
        self._persist(SampleName=text)
        return text

    # -- autosave ------------------------------------------------------------------------------
    def _settings(self) -> dict[str, Any]:
        pvs = {pv.pvspec.name: getattr(self, attr) for attr, pv in self._pvs_.items()}
        saved: dict[str, Any] = {name: str(pvs[name].value) for name in self.AUTOSAVED}
        saved["counter"] = self._counter
        return saved

    def _persist(self, **changed: Any) -> None:
        """Save the settings, with ``changed`` (PV name: new value) not yet in the PVs."""
        if self.autosave is None or self._restoring:
            return
        settings = self._settings() | changed
        try:
            self.autosave.save(settings)
        except OSError as err:
            log.error("autosave to %s failed: %s", self.autosave.path, err)

    async def _restore(self) -> None:
        """Settings from the config, then those saved before the last stop (as EPICS autosave)."""
        saved = self.autosave.load() if self.autosave is not None else {}
        pvs = {pv.pvspec.name: getattr(self, attr) for attr, pv in self._pvs_.items()}
        initial = {
            "DataDir": str(Path(self.config.data_dir).resolve()),
            "FileName": self.config.file_name,
        }
        restored = [name for name in self.AUTOSAVED if isinstance(saved.get(name), str)]
        initial |= {name: saved[name] for name in restored}
        self._restoring = True
        try:
            for name, value in initial.items():
                try:
                    await pvs[name].write(value)
                except Exception as err:  # noqa: BLE001 - a bad saved value must not stop the IOC
                    log.error("cannot restore %s=%r: %s", name, value, err)
        finally:
            self._restoring = False
        if isinstance(saved.get("counter"), int):
            self._counter = saved["counter"]
        if restored and self.autosave is not None:
            log.info("restored %s from %s", ", ".join(restored), self.autosave.path)

    # -- internals -----------------------------------------------------------------------------
    def _write(
        self, captures: list[Captured], path: Path, comment: str
    ) -> tuple[Experiment, int, str]:
        """In a worker thread: data classes, the file, its size and sha256."""
        frames = self._frame_files.files() if self._frame_files is not None else None
        experiment = assemble(
            self.config, self._current_id, self._current_sample, captures, comment, frames
        )
        write_experiment(experiment, path, self.config.compression)
        size, sha256 = _sha256(path)
        return experiment, size, sha256

    def _next_path(self, when: float) -> tuple[Path, int]:
        """The next free file name and its counter: a name already on disk is never reused."""
        directory = Path(str(self.data_dir.value))
        template = str(self.file_name.value)
        tries = 100_000 if "{counter" in template else 1
        for counter in range(self._counter + 1, self._counter + 1 + tries):
            path = directory / render_file_name(
                template,
                beamline=self.config.beamline,
                experiment_id=self._current_id,
                sample=self._current_sample or "sample",
                counter=counter,
                when=when,
            )
            if not path.exists():
                return path, counter
        raise WriteFailed(f"{directory}: no free file name for template {template!r}")


def _parse_args(
    argv: list[str] | None,
) -> tuple[argparse.Namespace, dict[str, Any], dict[str, Any]]:
    parser, split_args = template_arg_parser(
        default_prefix="", desc=textwrap.dedent(__doc__ or ""), argv=argv
    )
    parser.add_argument("--config", required=True, help="beamline config (.yaml, or a .csv PV map)")
    parser.add_argument("--data-dir", help="directory for the files (overrides the config)")
    kafka = parser.add_mutually_exclusive_group()
    kafka.add_argument(
        "--kafka-bootstrap", help="HOST:PORT of a Kafka broker (overrides the config)"
    )
    kafka.add_argument("--no-kafka", action="store_true", help="write files, send no events")
    parser.add_argument(
        "--no-validate", action="store_true", help="do not run the NeXus validators after a write"
    )
    parser.add_argument(
        "--autosave",
        metavar="FILE",
        help="where settings are kept across restarts (default: "
        "$XDG_STATE_HOME/assonant-ioc/<prefix>.json)",
    )
    parser.add_argument(
        "--macro",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a $(NAME) macro used in the config's PV names (repeatable)",
    )
    args = parser.parse_args(argv)
    ioc_options, run_options = split_args(args)
    return args, ioc_options, run_options


def build_config(args: argparse.Namespace) -> BeamlineConfig:
    macros = {}
    for item in args.macro:
        name, sep, value = item.partition("=")
        if not sep:
            raise ConfigError("--macro", [(0, f"--macro {item!r}: expected NAME=VALUE")])
        macros[name] = value
    config = load_config(args.config, macros=macros)
    if args.data_dir:
        config = replace(config, data_dir=args.data_dir)
    if args.no_validate:
        config = replace(config, validate=False)
    kafka = config.kafka
    if args.no_kafka:
        kafka = replace(kafka, enabled=False)
    elif args.kafka_bootstrap:
        kafka = replace(kafka, bootstrap=args.kafka_bootstrap, enabled=True)
    return replace(config, kafka=kafka)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args, ioc_options, run_options = _parse_args(argv)
    try:
        config = build_config(args)
    except ConfigError as err:
        raise SystemExit(str(err)) from err
    ioc_options["prefix"] = ioc_options["prefix"] or config.prefix
    sender = None
    if config.kafka.enabled and config.kafka.bootstrap:
        sender = EventSender(config.kafka.bootstrap, config.kafka.topic)
    elif config.kafka.enabled:
        log.warning("no Kafka bootstrap configured: files are written, no events are sent")
    autosave = Autosave(
        Path(args.autosave) if args.autosave else default_path(ioc_options["prefix"])
    )
    ioc = AssonantIOC(config=config, sender=sender, autosave=autosave, **ioc_options)
    run(ioc.pvdb, **run_options)


if __name__ == "__main__":
    main()
