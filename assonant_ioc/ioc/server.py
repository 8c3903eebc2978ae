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
and ``Status``/``LastError`` say why. The experiment in progress and the events not
yet delivered are kept in --state-dir and survive a crash or a restart.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from caproto import AlarmSeverity, AlarmStatus
from caproto.server import pvproperty

from assonant_ioc.config import BeamlineConfig
from assonant_ioc.config.spec import check_file_name_template
from assonant_ioc.errors import CommandRefused
from assonant_ioc.events.kafka import EventSender
from assonant_ioc.ioc import stats
from assonant_ioc.ioc.access import Policy, load_acf
from assonant_ioc.ioc.autosave import Autosave, default_state_dir
from assonant_ioc.ioc.ca_server import (
    restore_client_port,
)
from assonant_ioc.ioc.guard import WRITER, WriteGuard
from assonant_ioc.ioc.health import CpuLoad, LoopLag, rss_mb
from assonant_ioc.ioc.inputs import (
    data_dir_problem,
    text_problem,
)
from assonant_ioc.ioc.pva_server import PVAServer
from assonant_ioc.ioc.pvs import StatusPVs, long_string
from assonant_ioc.ioc.run_control import RunControl
from assonant_ioc.ioc.sdnotify import notify, watchdog_period
from assonant_ioc.lifecycle import Lifecycle, Settings
from assonant_ioc.model.components import Moment
from assonant_ioc.model.state import State
from assonant_ioc.monitor import PVMonitor
from assonant_ioc.monitor.forwarder import forwarder_of
from assonant_ioc.monitoring import http
from assonant_ioc.trust import proposal_refusal

log = logging.getLogger(__name__)


def _snapshot(moment: Moment) -> Callable[[AssonantIOC, Any, Any], Awaitable[int]]:
    """The putter of Snapshot:Pre or Snapshot:Post: 1 takes the ``moment``'s snapshot."""

    async def put(ioc: AssonantIOC, instance: Any, value: Any) -> int:
        await ioc._check_one(value, instance.pvspec.name)
        await ioc.lifecycle.snapshot(moment, ioc._settings())
        return 0

    return put


class AssonantIOC(WriteGuard, StatusPVs):
    __doc__ = __doc__

    # -- commands -------------------------------------------------------------------------
    snapshot_pre = pvproperty(
        put=_snapshot(Moment.PRE),
        name="Snapshot:Pre",
        value=0,
        doc="1: capture pre-exposure snapshot",
    )
    record_during = pvproperty(
        name="Record:During", value=0, doc="1: start, 0: stop recording during exposure"
    )
    snapshot_post = pvproperty(
        put=_snapshot(Moment.POST),
        name="Snapshot:Post",
        value=0,
        doc="1: capture post-exposure snapshot",
    )
    end_of_experiment = pvproperty(
        name="EndOfExperiment", value=0, doc="1: write the NeXus file and send the Kafka event"
    )
    abort = pvproperty(name="Abort", value=0, doc="1: discard the experiment in progress")

    # -- settings -------------------------------------------------------------------------
    experiment_id = long_string(
        "ExperimentId", "", "experiment id (Kafka key); empty: one is made up", length=256
    )
    sample_name = long_string("SampleName", "", "sample name, written to NXsample/name", length=256)
    proposal = long_string(
        "Proposal",
        "",
        "proposal id (NeXus experiment_identifier; who may read the data); empty: the config's",
        length=256,
    )
    comment = long_string(
        "Comment", "", "operator's note, written to each entry's experiment_description"
    )
    data_dir = long_string("DataDir", "", "absolute directory the files go to")
    file_name = long_string("FileName", "", "file name template", length=256)

    # -- status (the rest: ioc/pvs.py) ------------------------------------------------------
    status = long_string("Status", "Starting", "what happened last", read_only=True)
    heartbeat = pvproperty(name="Heartbeat", value=0, read_only=True, doc="+1 every second")

    #: Settings kept by autosave, by PV name.
    AUTOSAVED = ("ExperimentId", "SampleName", "Proposal", "DataDir", "FileName")

    def __init__(
        self,
        *args: Any,
        config: BeamlineConfig,
        sender: EventSender | None,
        monitor: PVMonitor | None = None,
        autosave: Autosave | None = None,
        state_dir: Path | None = None,
        acf: Path | None = None,
        metrics: tuple[str, int] | None = None,
        pva: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._metrics_at = metrics
        self._pva: PVAServer | None = None
        self._pva_on = pva
        self._metrics_server: Any = None
        self._acf = acf
        self._policy: Policy | None = load_acf(acf) if acf is not None else None
        self._guard_writes()
        self.autosave = autosave
        self._restoring = False
        self._started = time.time()
        self._cpu = CpuLoad()
        self._lag = LoopLag()
        self._errors = 0  # refusals and errors shown so far
        self._last_updates = (0, time.monotonic())
        self._callback_errors = 0
        self._kafka_shown: str | None = None
        self._watchdog = 0.0
        self._ready = False
        self.config = config
        self.sender = sender
        self.monitor = monitor or PVMonitor(
            config.pvs(), config.array_pvs().values(), forwarder_of(config)
        )
        if state_dir is None:
            state_dir = default_state_dir(autosave.path if autosave else None, self.prefix)
        self.lifecycle = Lifecycle(config, self.monitor, state_dir, _Reporter(self), sender)
        self._counter = 0
        self.run_control: RunControl | None = None

    def _start_run_control(self) -> None:
        """Jobs over Kafka (``run_control:`` in the config, with a broker)."""
        settings = self.config.run_control
        if settings.command_topic and self.sender is not None:
            self.run_control = RunControl(self, self.sender, settings, self.sender.bootstrap)
            self.run_control.start()
            log.info("run control: commands on %s", settings.command_topic)
        elif settings.command_topic:
            log.warning("run_control configured but no Kafka broker: no jobs taken")

    # -- helpers ------------------------------------------------------------------------------
    async def _say(self, message: str) -> None:
        log.info("%s", message)
        await self.status.write(message[:1023])

    async def _error(self, message: str) -> None:
        """A refusal or an error: logged, and shown on Status and LastError."""
        log.warning("%s", message)
        self._errors += 1
        await self.status.write(message[:1023])
        await self.last_error.write(message[:1023])

    async def _check_one(self, value: Any, pv: str) -> None:
        if value != 1:
            msg = f"{pv} refused: write 1 to run the command, not {value!r}"
            await self._error(msg)
            raise CommandRefused(msg)
        if not self._ready:
            msg = f"{pv} refused: the service is still starting"
            await self._error(msg)
            raise CommandRefused(msg)

    def _settings(self) -> Settings:
        return Settings(
            experiment_id=str(self.experiment_id.value),
            sample=str(self.sample_name.value),
            proposal=str(self.proposal.value),
            comment=str(self.comment.value),
            data_dir=str(self.data_dir.value),
            file_name=str(self.file_name.value),
            counter=self._counter,
            who=WRITER.get(),
        )

    # -- startup / periodic ---------------------------------------------------------------
    @status.startup
    async def status(self, instance: Any, async_lib: Any) -> None:
        await self.start_time.write(time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(self._started)))
        await stats.alarm_limits(self)
        if self._metrics_at is not None:
            host, port = self._metrics_at
            self._metrics_server = await http.serve(
                host, port, lambda: stats.metrics(self), lambda: stats.health(self)
            )
            log.info("metrics on http://%s:%d/metrics, health on /health", host, port)
        self.lifecycle.spawn(self._lag.run())
        if self._pva_on:  # the same PVs over PVAccess, beside CA
            read_only = {
                getattr(self, attr).pvname
                for attr, prop in self._pvs_.items()
                if prop.pvspec.read_only
            }
            self._pva = PVAServer(self.pvdb, lambda: self.last_error.value, read_only)
            try:
                self._pva.start()
            except Exception as err:  # CA goes on; said where operators look
                self._pva = None
                log.exception("PVAccess not served")
                await self._error(f"PVAccess not served (Channel Access only): {err}")
        await self._restore()
        await self.pvs_total.write(self.monitor.total)
        restore_client_port()  # the CA server has its port: libca searches as configured
        await asyncio.to_thread(self.monitor.start)
        heard, total = await asyncio.to_thread(
            self.monitor.wait_first_values, self.config.connect_timeout
        )
        recovered = await self.lifecycle.start()
        # SIGHUP reloads the access security file; without one it is said and changes nothing
        # (never the default action, which would end the IOC)
        asyncio.get_running_loop().add_signal_handler(
            signal.SIGHUP, lambda: self.lifecycle.spawn(self._reload_acf())
        )
        self._start_run_control()
        self._ready = True
        notify(f"READY=1\nSTATUS={self.config.beamline}: {heard} of {total} PVs")
        if self.status.value == "Starting":  # a refusal during start-up stays on show
            missing = f" ({total - heard} without a value yet)" if heard < total else ""
            await self._say(f"Idle: {self.config.beamline}, {total} PVs{missing}")
        elif recovered:
            log.info("%s", recovered)

    @status.shutdown
    async def status(self, instance: Any, async_lib: Any) -> None:
        notify("STOPPING=1")
        if self._pva is not None:
            self._pva.stop()
        if self.run_control is not None:
            await self.run_control.stop()
        await self.lifecycle.stop()
        await asyncio.to_thread(self.monitor.stop)

    @heartbeat.scan(period=1.0)
    async def heartbeat(self, instance: Any, async_lib: Any) -> None:
        hold = os.environ.get("ASSONANT_HEARTBEAT_HOLD")  # a test of the healthcheck: the
        if not hold or not os.path.exists(hold):  # heartbeat alone stops while this file is
            await instance.write((instance.value + 1) % 2**31)
        await self.uptime.write(int(time.time() - self._started))
        await self.mem_used.write(rss_mb())
        await self.cpu_load.write(self._cpu.sample())
        updates, now = self.monitor.updates, time.monotonic()
        rate = (updates - self._last_updates[0]) / max(now - self._last_updates[1], 1e-3)
        self._last_updates = (updates, now)
        await self.update_rate.write(rate)
        await self.loop_lag.write(round(1000 * self._lag.take(), 1))
        errors = self.monitor.callback_errors
        if errors != self._callback_errors:  # counted in libca's threads, reported here
            self._callback_errors = errors
            await self._error(f"{errors} monitor callback error(s) so far; see the IOC log")
        connected = self.monitor.connected_count
        if connected != self.pvs_connected.value:
            await self.pvs_connected.write(connected)
        kafka = "Yes" if self.sender is not None and self.sender.connected else "No"
        if kafka != self._kafka_shown:  # the first second too: its alarm, if down
            self._kafka_shown = kafka
            down = kafka == "No" and self.sender is not None  # no broker configured: no alarm
            await self.kafka_connected.write(
                kafka,
                severity=AlarmSeverity.MINOR_ALARM if down else AlarmSeverity.NO_ALARM,
                status=AlarmStatus.COMM if down else AlarmStatus.NO_ALARM,
            )
        pending = len(self.lifecycle.outbox)
        if pending != self.events_pending.value:
            await self.events_pending.write(pending)  # its limits set the alarm
        await stats.iocstats(self, instance.value)
        period = watchdog_period()  # systemd's WatchdogSec: the loop is alive
        if period is not None and time.monotonic() - self._watchdog >= period:
            self._watchdog = time.monotonic()
            notify("WATCHDOG=1")

    # -- commands -----------------------------------------------------------------------------
    @record_during.putter
    async def record_during(self, instance: Any, value: Any) -> int:
        if value not in (0, 1):
            msg = f"Record:During refused: write 1 (start) or 0 (stop), not {value!r}"
            await self._error(msg)
            raise CommandRefused(msg)
        await self._check_one(1, "Record:During")
        if value == 1:
            await self.lifecycle.record_start(self._settings())
            return 1
        await self.lifecycle.record_stop(WRITER.get())
        return 0

    @end_of_experiment.putter
    async def end_of_experiment(self, instance: Any, value: Any) -> int:
        await self._check_one(value, "EndOfExperiment")
        _, self._counter = await self.lifecycle.end_of_experiment(self._settings())
        self._persist()
        return 0

    @abort.putter
    async def abort(self, instance: Any, value: Any) -> int:
        await self._check_one(value, "Abort")
        await self.lifecycle.abort()
        if self.run_control is not None:  # a run-control job ends with a wrdn saying so
            await self.run_control.aborted(WRITER.get())
        await self.record_during.write(0, verify_value=False)  # no putter: not a command
        return 0

    # -- settings -----------------------------------------------------------------------------
    async def _refuse_setting(self, msg: str) -> None:
        await self._error(msg)
        raise ValueError(msg)

    async def _kept(self, name: str, text: str, why: str | None) -> str:
        """The setting ``name`` takes ``text`` (and keeps it across restarts) unless ``why``
        refuses it."""
        if why:
            await self._refuse_setting(why)
        self._persist(**{name: text})
        return text

    async def _text(self, name: str, value: Any, max_bytes: int, strip: bool = False) -> str:
        """A text setting's value, or a refusal: too long, or a control character in it."""
        text = str(value).strip(" ") if strip else str(value)
        why = text_problem(name, text, max_bytes)
        if why:
            await self._refuse_setting(why)
        return text

    def _file_name_problem(self, **changed: str) -> str | None:
        """Why the file name would be unusable with ``changed`` settings, or None."""
        current = {
            "template": str(self.file_name.value),
            "experiment_id": str(self.experiment_id.value),
            "sample": str(self.sample_name.value),
        } | changed
        if not current["template"]:
            return None
        return check_file_name_template(beamline=self.config.beamline, **current)

    @experiment_id.putter
    async def experiment_id(self, instance: Any, value: Any) -> str:
        text = await self._text("ExperimentId", value, 255, strip=True)
        if "/" in text or "\\" in text:
            await self._refuse_setting(f"ExperimentId refused: {text[:60]!r} has a path separator")
        if text in (".", ".."):
            await self._refuse_setting(f"ExperimentId refused: {text!r} is not a usable id")
        why = self._file_name_problem(experiment_id=text)
        if self._restoring:
            why = None
        return await self._kept("ExperimentId", text, why and f"ExperimentId refused: {why}")

    @data_dir.putter
    async def data_dir(self, instance: Any, value: Any) -> str:
        text = str(value).strip(" ")
        why = await asyncio.to_thread(data_dir_problem, text, self.config.data_root)
        return await self._kept("DataDir", text, why)

    @file_name.putter
    async def file_name(self, instance: Any, value: Any) -> str:
        text = await self._text("FileName", value, 255, strip=True)
        why = check_file_name_template(text) or self._file_name_problem(template=text)
        return await self._kept("FileName", text, why and f"FileName refused: {why}")

    @proposal.putter
    async def proposal(self, instance: Any, value: Any) -> str:
        text = await self._text("Proposal", value, 64, strip=True)
        return await self._kept("Proposal", text, proposal_refusal("Proposal refused:", text))

    @comment.putter
    async def comment(self, instance: Any, value: Any) -> str:
        return await self._text("Comment", value, 1023)

    @sample_name.putter
    async def sample_name(self, instance: Any, value: Any) -> str:
        text = await self._text("SampleName", value, 255)
        why = self._file_name_problem(sample=text or "sample")
        if self._restoring:  # a restored name is kept, whatever file name it gives
            why = None
        return await self._kept("SampleName", text, why and f"SampleName refused: {why}")

    # -- autosave ------------------------------------------------------------------------------
    def _saved_settings(self) -> dict[str, Any]:
        pvs = {pv.pvspec.name: getattr(self, attr) for attr, pv in self._pvs_.items()}
        saved: dict[str, Any] = {name: str(pvs[name].value) for name in self.AUTOSAVED}
        saved["counter"] = self._counter
        return saved

    def _persist(self, **changed: Any) -> None:
        """Save the settings, with ``changed`` (PV name: new value) not yet in the PVs."""
        if self.autosave is None or self._restoring:
            return
        settings = self._saved_settings() | changed
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


class _Reporter:
    """What the lifecycle says, shown on the IOC's status PVs."""

    def __init__(self, ioc: AssonantIOC) -> None:
        self.ioc = ioc

    async def say(self, message: str) -> None:
        await self.ioc._say(message)

    async def error(self, message: str) -> None:
        await self.ioc._error(message)

    async def state_changed(self, state: State) -> None:
        fault = state is State.FAULT  # a MAJOR alarm until EndOfExperiment or Abort
        await self.ioc.state.write(
            state.label,
            severity=AlarmSeverity.MAJOR_ALARM if fault else AlarmSeverity.NO_ALARM,
            status=AlarmStatus.STATE if fault else AlarmStatus.NO_ALARM,
        )
        if state is not State.RECORDING and self.ioc.record_during.value != 0:
            await self.ioc.record_during.write(0, verify_value=False)

    async def file_written(self, path: Path) -> None:
        await self.ioc.last_file.write(str(path))
        await self.ioc.files_written.write(self.ioc.files_written.value + 1)

    async def validated(self, text: str) -> None:
        await self.ioc.validation.write(text[:1023])

    async def durability(self, waiting: int, problem: str) -> None:
        ok = not problem
        severity = AlarmSeverity.NO_ALARM if ok else AlarmSeverity.MAJOR_ALARM
        status = AlarmStatus.NO_ALARM if ok else AlarmStatus.STATE
        await self.ioc.state_dir_ok.write("Yes" if ok else "No", severity=severity, status=status)
        await self.ioc.not_durable.write(
            waiting, severity=AlarmSeverity.NO_ALARM if ok else AlarmSeverity.MINOR_ALARM
        )
