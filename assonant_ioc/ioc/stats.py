"""The IOC as a controls group's tools see it: its alarm limits from the config,
devIocStats' names each second, Prometheus' metrics and the health verdict."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from typing import TYPE_CHECKING

from assonant_ioc.ioc.ca_server import client_count
from assonant_ioc.model.state import State
from assonant_ioc.monitoring.http import Metric
from assonant_ioc.monitoring.metrics import gauge

STATE_LABELS = [s.label for s in State]

if TYPE_CHECKING:
    from assonant_ioc.ioc.pvs import StatusPVs


def metrics(ioc: StatusPVs) -> list[Metric]:
    """What Prometheus scrapes: the state, files, events pending, updates/s, loop lag,
    the journal's bytes and the PVs connected."""
    state = str(ioc.state.value)
    journal = ioc.lifecycle.journal.dir
    size = 0
    with contextlib.suppress(OSError):
        size = sum(p.stat().st_size for p in journal.iterdir() if p.is_file())
    kafka = 1.0 if ioc.sender is not None and ioc.sender.connected else 0.0
    files = float(ioc.files_written.value)
    gauges = {
        "events_pending": ("events not yet acknowledged", len(ioc.lifecycle.outbox)),
        "updates_per_second": ("PV updates received per second", ioc.update_rate.value),
        "loop_lag_ms": ("worst event-loop delay over the last second", ioc.loop_lag.value),
        "journal_bytes": ("the experiment in progress on disk", size),
        "pvs_connected": ("beamline PVs connected", ioc.pvs_connected.value),
        "pvs_total": ("beamline PVs configured", ioc.pvs_total.value),
        "kafka_connected": ("the broker answered the last attempt", kafka),
        "not_durable": ("captured, held in memory", ioc.not_durable.value),
    }
    return [
        (
            "assonant_state",
            "gauge",
            "1 for the state the IOC is in",
            [({"state": s}, float(s == state)) for s in STATE_LABELS],
        ),
        ("assonant_files_written_total", "counter", "files written", [({}, files)]),
        *(gauge("", name, text, value) for name, (text, value) in gauges.items()),
    ]


def health(ioc: StatusPVs) -> str:
    """Empty when healthy; else why not: the broker (when one is configured) or the state
    directory failing."""
    if ioc.sender is not None and not ioc.sender.connected:
        return "Kafka broker unreachable"
    if ioc.state_dir_ok.value != "Yes":
        return "the state directory cannot take the experiment (see LastError)"
    return ""


async def alarm_limits(ioc: StatusPVs) -> None:
    """The config's HIGH (MINOR) and HIHI (MAJOR) limits; the low limits below any value
    (caproto alarms on value <= LOW when the low limits differ from the high ones)."""
    limits = ioc.config.alarms
    for pv, (high, hihi) in (
        (ioc.loop_lag, limits.loop_lag_ms),
        (ioc.mem_used, limits.mem_used_mb),
        (ioc.events_pending, limits.events_pending),
    ):
        await pv.write_metadata(
            upper_warning_limit=high,
            upper_alarm_limit=hihi,
            lower_warning_limit=-1,
            lower_alarm_limit=-2,
        )
    await ioc.ioc_starttod.write(ioc.start_time.value)
    await ioc.ioc_hostname.write(socket.gethostname()[:39])
    with contextlib.suppress(OSError, ValueError):
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        await ioc.ioc_fd_max.write(min(int(soft), 2**31 - 1))


async def iocstats(ioc: StatusPVs, heartbeat: int) -> None:
    """devIocStats' names, each second."""
    up = int(time.time() - ioc._started)
    days, rest = divmod(up, 86400)
    await ioc.ioc_heartbeat.write(heartbeat)
    hms = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    await ioc.ioc_uptime.write(f"{days} days, {hms}")
    await ioc.ioc_cpu_load.write(ioc.cpu_load.value)
    await ioc.ioc_mem_used.write(ioc.mem_used.value * 1e6)
    await ioc.ioc_ca_clients.write(client_count())
    with contextlib.suppress(OSError):
        await ioc.ioc_fd_count.write(len(os.listdir("/proc/self/fd")))
