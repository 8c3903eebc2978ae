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
import contextvars
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

from caproto import AccessRights, AlarmSeverity, AlarmStatus, ChannelType
from caproto.server import PVGroup, pvproperty

import assonant_ioc
from assonant_ioc.config import BeamlineConfig
from assonant_ioc.config.spec import check_file_name_template
from assonant_ioc.errors import CommandRefused, ConfigError
from assonant_ioc.events import http
from assonant_ioc.events.kafka import EventSender
from assonant_ioc.ioc import stats
from assonant_ioc.ioc.access import COMMANDS_ASG, SETTINGS_ASG, Access, Policy, load_acf
from assonant_ioc.ioc.autosave import Autosave, default_path
from assonant_ioc.ioc.ca_server import (
    NO_WRITE_ACCESS,
    PUT_FAILED,
    PUT_NOTIFY,
    push_access_rights,
    restore_client_port,
)
from assonant_ioc.ioc.health import CpuLoad, LoopLag, rss_mb
from assonant_ioc.ioc.inputs import (
    command_problem,
    data_dir_problem,
    empty_text,
    plain,
    raw_text_problem,
    sent_value,
    text_problem,
)
from assonant_ioc.ioc.sdnotify import notify, watchdog_period
from assonant_ioc.lifecycle import Lifecycle, Settings
from assonant_ioc.model.components import Moment
from assonant_ioc.model.state import State
from assonant_ioc.monitor import PVMonitor
from assonant_ioc.trust import proposal_refusal

log = logging.getLogger(__name__)

STATE_STRINGS = [s.label for s in State]
#: user@host of the client whose write is being handled (set around each putter)
WRITER: contextvars.ContextVar[str] = contextvars.ContextVar("writer", default="")


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
    proposal = _long_string(
        "Proposal",
        "",
        "proposal id (NeXus experiment_identifier; who may read the data); empty: the config's",
        length=256,
    )
    comment = _long_string(
        "Comment", "", "operator's note, written to each entry's experiment_description"
    )
    data_dir = _long_string("DataDir", "", "absolute directory the files go to")
    file_name = _long_string("FileName", "", "file name template", length=256)

    # -- status ---------------------------------------------------------------------------
    state = pvproperty(
        name="State",
        alarm_group="state",  # its own alarm (caproto shares one by default)
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
    files_written = pvproperty(
        name="FilesWritten", value=0, units="files", read_only=True, doc="files written"
    )
    pvs_connected = pvproperty(
        name="PVsConnected", value=0, units="PVs", read_only=True, doc="PVs connected"
    )
    pvs_total = pvproperty(
        name="PVsTotal", value=0, units="PVs", read_only=True, doc="PVs configured"
    )
    events_pending = pvproperty(
        name="EventsPending",
        alarm_group="events_pending",  # its own alarm (caproto shares one by default)
        value=0,
        units="events",
        read_only=True,
        doc="file_written events kept on disk, not yet acknowledged by the broker "
        "(HIGH: MINOR, HIHI: MAJOR; config alarms: events_pending)",
    )
    kafka_connected = pvproperty(
        name="KafkaConnected",
        alarm_group="kafka",  # its own alarm (caproto shares one by default)
        value="No",
        dtype=ChannelType.ENUM,
        enum_strings=["No", "Yes"],
        record="bi",
        read_only=True,
        doc="the Kafka broker answered the last attempt",
    )
    heartbeat = pvproperty(name="Heartbeat", value=0, read_only=True, doc="+1 every second")
    state_dir_ok = pvproperty(
        name="StateDirOK",
        alarm_group="state_dir",  # its own alarm (caproto shares one by default)
        value="Yes",
        dtype=ChannelType.ENUM,
        enum_strings=["No", "Yes"],
        record="bi",
        read_only=True,
        doc="the state directory takes the experiment (No: a MAJOR alarm, see LastError)",
    )
    not_durable = pvproperty(
        name="NotDurable",
        alarm_group="not_durable",  # its own alarm (caproto shares one by default)
        value=0,
        units="readings",
        read_only=True,
        doc="readings and snapshots captured but held in memory, not yet durable",
    )

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
        alarm_group="mem_used",  # its own alarm (caproto shares one by default)
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
    loop_lag = pvproperty(
        name="LoopLag",
        alarm_group="loop_lag",  # its own alarm (caproto shares one by default)
        value=0.0,
        units="ms",
        precision=1,
        read_only=True,
        doc="how late the IOC's event loop ran over the last second (the worst delay)",
    )

    # -- devIocStats' names, for the panels and archiver configs that expect them ----------
    ioc_heartbeat = pvproperty(name="HEARTBEAT", value=0, read_only=True, doc="= Heartbeat")
    ioc_uptime = pvproperty(
        name="UPTIME", value="", dtype=ChannelType.STRING, read_only=True, doc="d HH:MM:SS"
    )
    ioc_starttod = pvproperty(
        name="STARTTOD", value="", dtype=ChannelType.STRING, read_only=True, doc="= StartTime"
    )
    ioc_cpu_load = pvproperty(
        name="IOC_CPU_LOAD", value=0.0, units="%", precision=1, read_only=True, doc="= CPULoad"
    )
    ioc_mem_used = pvproperty(
        name="MEM_USED", value=0.0, units="byte", precision=0, read_only=True, doc="RSS"
    )
    ioc_hostname = pvproperty(
        name="HOSTNAME", value="", dtype=ChannelType.STRING, read_only=True, doc="host"
    )
    ioc_ca_clients = pvproperty(
        name="CA_CLNT_CNT", value=0, units="clients", read_only=True, doc="CA clients now"
    )
    ioc_fd_count = pvproperty(
        name="FD_CNT", value=0, units="fds", read_only=True, doc="file descriptors open"
    )
    ioc_fd_max = pvproperty(
        name="FD_MAX", value=0, units="fds", read_only=True, doc="file descriptor limit"
    )

    #: The PV interface by role (the panel generator and the docs read these).
    COMMANDS = ("Snapshot:Pre", "Record:During", "Snapshot:Post", "EndOfExperiment", "Abort")
    SETTINGS = ("ExperimentId", "SampleName", "Proposal", "Comment", "DataDir", "FileName")
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
        "StateDirOK",
        "NotDurable",
        "EventsPending",
    )
    HEALTH = ("Uptime", "StartTime", "Version", "MemUsed", "CPULoad", "UpdateRate", "LoopLag")
    #: devIocStats' names of the same (and the host, CA clients, file descriptors)
    IOCSTATS = (
        "HEARTBEAT",
        "UPTIME",
        "STARTTOD",
        "IOC_CPU_LOAD",
        "MEM_USED",
        "HOSTNAME",
        "CA_CLNT_CNT",
        "FD_CNT",
        "FD_MAX",
    )
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
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._metrics_at = metrics
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
        self.monitor = monitor or PVMonitor(config.pvs())
        if state_dir is None:
            state_dir = default_state_dir(autosave.path if autosave else None, self.prefix)
        self.lifecycle = Lifecycle(config, self.monitor, state_dir, _Reporter(self), sender)
        self._counter = 0

    # -- access security and audit ----------------------------------------------------------
    def _guard_writes(self) -> None:
        """Every command and setting PV: access as the ACF says, each accepted write logged
        with who made it, and a refusal caproto makes before a putter runs on LastError."""
        groups = {name: COMMANDS_ASG for name in self.COMMANDS}
        groups |= {name: SETTINGS_ASG for name in self.SETTINGS}
        for attr, prop in self._pvs_.items():
            name = prop.pvspec.name
            if name in groups:
                self._guard(getattr(self, attr), name, groups[name], name in self.COMMANDS)
            elif prop.pvspec.read_only:
                self._read_only(getattr(self, attr), name)

    def _read_only(self, pv: Any, name: str) -> None:
        """A status PV: a put with callback is answered at once with ECA_NOWTACCESS, as
        rsrv answers it (caproto sends an error message its own client never matches, so a
        caproto ``write(wait=True)`` waited out its timeout); a plain put gets the message."""
        original = pv.auth_write

        async def auth_write(
            hostname: str, username: str, data: Any, data_type: Any, metadata: Any, **kw: Any
        ) -> Any:
            log.info(
                "audit: %s@%s wrote %s = %r: refused (read-only)",
                username,
                hostname,
                name,
                sent_value(data),
            )
            if PUT_NOTIFY.get():
                return NO_WRITE_ACCESS
            return await original(hostname, username, data, data_type, metadata, **kw)

        pv.auth_write = auth_write

    def _rights(self, asg: str, host: str | None, user: str | None) -> AccessRights:
        if self._policy is None:
            return AccessRights.READ | AccessRights.WRITE
        access = self._policy.access(asg, host, user)
        if access is Access.WRITE:
            return AccessRights.READ | AccessRights.WRITE
        return AccessRights.READ if access is Access.READ else AccessRights.NO_ACCESS

    def _guard(self, pv: Any, name: str, asg: str, command: bool) -> None:
        original = pv.auth_write
        pv.check_access = lambda host, user: self._rights(asg, host, user)

        async def auth_write(
            hostname: str, username: str, data: Any, data_type: Any, metadata: Any, **kw: Any
        ) -> Any:
            """A refused write: the reason on LastError, and a put with callback completes
            with a failure status (a plain put gets caproto's error message)."""
            who = f"{username}@{hostname}"
            sent = sent_value(data)
            if AccessRights.WRITE not in self._rights(asg, hostname, username):
                denied = f"{who} has no write access ({asg})"
                await self._error(f"{name} refused: {denied}")
                log.info("audit: %s wrote %s = %r: refused (%s)", who, name, sent, denied)
                if PUT_NOTIFY.get():
                    return NO_WRITE_ACCESS
                return await original(hostname, username, data, data_type, metadata, **kw)
            errors = self._errors
            token = WRITER.set(who)
            try:
                why = (
                    command_problem(name, data)
                    if command
                    else raw_text_problem(name, data, data_type)
                )
                if why:
                    await self._error(why)
                    raise CommandRefused(why)
                if command and getattr(data_type, "name", "").endswith("ENUM"):
                    data_type = ChannelType.LONG  # DBR_ENUM 1 is the command's 1, as in rsrv
                if not command and empty_text(data):
                    # caproto cannot convert an empty text to a char waveform (it calls int(''))
                    await pv.write("")
                    result = None
                else:
                    result = await original(hostname, username, data, data_type, metadata, **kw)
            except Exception as err:
                if self._errors == errors:  # refused before a putter ran
                    cause = err if str(err) or err.__cause__ is None else err.__cause__
                    await self._error(
                        f"{name} refused: {plain(data)!r} "
                        f"({getattr(data_type, 'name', data_type)}): "
                        f"{type(cause).__name__}: {cause}"
                    )
                reason = str(self.last_error.value)
                log.info("audit: %s wrote %s = %r: refused (%s)", who, name, sent, reason)
                if PUT_NOTIFY.get():
                    return PUT_FAILED
                raise
            finally:
                WRITER.reset(token)
            log.info("audit: %s wrote %s = %r", who, name, sent)
            return result

        pv.auth_write = auth_write

    async def _reload_acf(self) -> None:
        """SIGHUP: read the access security file again; a bad file keeps the old rules. The
        clients' open channels are told their new rights at once, as rsrv does."""
        if self._acf is None:
            log.warning("SIGHUP: no access security file (--acf): nothing to reload")
            return
        try:
            self._policy = await asyncio.to_thread(load_acf, self._acf)
        except ConfigError as err:
            await self._error(f"access security not reloaded, old rules kept: {err}")
            return
        changed = await push_access_rights(self.pvdb)
        await self._say(
            f"access security reloaded from {self._acf}; new rights sent on {changed} channel(s)"
        )

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
    @snapshot_pre.putter
    async def snapshot_pre(self, instance: Any, value: Any) -> int:
        await self._check_one(value, "Snapshot:Pre")
        await self.lifecycle.snapshot(Moment.PRE, self._settings())
        return 0

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

    @snapshot_post.putter
    async def snapshot_post(self, instance: Any, value: Any) -> int:
        await self._check_one(value, "Snapshot:Post")
        await self.lifecycle.snapshot(Moment.POST, self._settings())
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
        await self.record_during.write(0, verify_value=False)  # no putter: not a command
        return 0

    # -- settings -----------------------------------------------------------------------------
    async def _refuse_setting(self, msg: str) -> None:
        await self._error(msg)
        raise ValueError(msg)

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
        if why and not self._restoring:
            await self._refuse_setting(f"ExperimentId refused: {why}")
        self._persist(ExperimentId=text)
        return text

    @data_dir.putter
    async def data_dir(self, instance: Any, value: Any) -> str:
        text = str(value).strip(" ")
        why = await asyncio.to_thread(data_dir_problem, text, self.config.data_root)
        if why:
            await self._refuse_setting(why)
        self._persist(DataDir=text)
        return text

    @file_name.putter
    async def file_name(self, instance: Any, value: Any) -> str:
        text = await self._text("FileName", value, 255, strip=True)
        why = check_file_name_template(text) or self._file_name_problem(template=text)
        if why:
            await self._refuse_setting(f"FileName refused: {why}")
        self._persist(FileName=text)
        return text

    @proposal.putter
    async def proposal(self, instance: Any, value: Any) -> str:
        text = await self._text("Proposal", value, 64, strip=True)
        why = proposal_refusal("Proposal refused:", text)
        if why:
            await self._refuse_setting(why)
        self._persist(Proposal=text)
        return text

    @comment.putter
    async def comment(self, instance: Any, value: Any) -> str:
        return await self._text("Comment", value, 1023)

    @sample_name.putter
    async def sample_name(self, instance: Any, value: Any) -> str:
        text = await self._text("SampleName", value, 255)
        why = self._file_name_problem(sample=text or "sample")
        if why and not self._restoring:
            await self._refuse_setting(f"SampleName refused: {why}")
        self._persist(SampleName=text)
        return text

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


def default_state_dir(autosave: Path | None, prefix: str) -> Path:
    """Beside the autosave file: ``<autosave name without .json>.state``."""
    base = autosave or default_path(prefix)
    return base.with_name(f"{base.stem}.state")


if __name__ == "__main__":  # python -m assonant_ioc.ioc.server, as before
    from assonant_ioc.ioc.main import main

    main()
