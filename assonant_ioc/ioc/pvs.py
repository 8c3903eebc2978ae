"""The IOC's status and health PVs (devIocStats' names too) and its PV interface by role.

What the service shows, declared apart from what it is told (``ioc/server.py`` holds the
commands and settings, whose putters are the service's). The attributes named below the
PVs are the server's; ``ioc/stats`` reads them through this class.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from caproto import ChannelType
from caproto.server import PVGroup, pvproperty

import assonant_ioc
from assonant_ioc.model.state import State

if TYPE_CHECKING:
    from assonant_ioc.config import BeamlineConfig
    from assonant_ioc.events.kafka import EventSender
    from assonant_ioc.lifecycle import Lifecycle
    from assonant_ioc.monitor import PVMonitor

STATE_STRINGS = [s.label for s in State]


def long_string(
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


class StatusPVs(PVGroup):
    """Status, health and devIocStats PVs; the server's state they are made from."""

    config: BeamlineConfig
    sender: EventSender | None
    lifecycle: Lifecycle
    monitor: PVMonitor
    _started: float

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
    last_file = long_string("LastFile", "", "full path of the last file written", read_only=True)
    last_error = long_string("LastError", "", "the last error or refusal", read_only=True)
    validation = long_string(
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
