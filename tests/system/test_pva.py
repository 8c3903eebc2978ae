"""PVAccess channels beside Channel Access ones: the simulated beamline's PVA devices (a
temperature that goes into HIGH and HIHI alarm, an enum, an array) recorded with the CA
PVs of the simulated beamline, in one file. The file's values, alarms and timestamps equal
what a bare p4p client monitoring the same PVs saw, update by update; each reading's
protocol is in its provenance (``pva://NAME``), the CA ones bare as before."""

from __future__ import annotations

import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from assonant_ioc.monitor.pva import decoded
from assonant_ioc.nexus.provenance import provenance
from assonant_ioc.sim import procs, pva_env
from tests.system.conftest import start_service

pytestmark = pytest.mark.timeout(300)

FIELDS = ("temperature", "mode", "spectrum")


def _heater(prefix: str) -> str:
    """A component of PVA channels, put into the simulated beamline's config."""
    return (
        "  - name: heater\n"
        "    class: Sensor\n"
        "    fields:\n"
        f'      temperature: {{pv: "pva://{prefix}temp", units: K, moments: [pre, during, post]}}\n'
        f'      mode: {{pv: "pva://{prefix}mode", moments: [pre, during, post]}}\n'
        f'      spectrum: {{pv: "pva://{prefix}spectrum", units: counts, '
        "moments: [pre, during, post]}\n"
    )


class BareClient:
    """p4p's own client monitoring the PVs: every update as it arrived (decoded as the
    normative types say: value, time, severity, status)."""

    def __init__(self, udp: int, names: dict[str, str]) -> None:
        from p4p.client.thread import Context

        self.seen: dict[str, list[tuple[Any, float, int, int]]] = {f: [] for f in names}
        self._lock = threading.Lock()
        self._ctx = Context("pva", conf=pva_env.pva_client_env(udp), useenv=False, nt=False)
        self._subs = [self._ctx.monitor(pv, self._taker(f)) for f, pv in names.items()]

    def _taker(self, field: str) -> Any:
        def take(v: Any) -> None:
            if not isinstance(v, Exception):
                value, t, severity, status, _units = decoded(v)
                with self._lock:
                    self.seen[field].append((value, t, severity, status))

        return take

    def close(self) -> None:
        for sub in self._subs:
            sub.close()
        self._ctx.close()


def _log(group: Any) -> list[tuple[Any, float, int, int]]:
    """An NXlog's points: (value, POSIX time, severity, status)."""
    zero = datetime.fromisoformat(group["time"].attrs["start"]).timestamp()
    values, times = group["value"][()], group["time"][()]
    prov = provenance(group)
    return [
        (
            values[i],
            zero + float(times[i]),
            int(prov["alarm_severity"][i]),
            int(prov["alarm_status"][i]),
        )
        for i in range(len(times))
    ]


def test_pva_channels_are_recorded_as_a_bare_p4p_client_sees_them_beside_ca(
    sim: tuple[str, int], log_dir: Path, tmp_path: Path
) -> None:
    pva_prefix = procs.new_prefix("PVA")
    with procs.sim_pva(log_dir, pva_prefix) as (_tcp, udp):
        names = {"temperature": "temp", "mode": "mode", "spectrum": "spectrum"}
        bare = BareClient(udp, {f: f"{pva_prefix}{n}" for f, n in names.items()})
        args = ["--no-kafka", "--no-validate"]
        service = start_service(
            log_dir,
            tmp_path,
            sim,
            args,
            extra_yaml=_heater(pva_prefix),
            more_env=pva_env.pva_client_env(udp),
        )
        try:
            with service as (client, P, _data, _proc):
                procs.wait_until(
                    lambda: client.get(f"{P}PVsConnected") == client.get(f"{P}PVsTotal"),
                    30,
                    "every PV connected, the PVA ones too",
                )
                client.put(f"{P}ExperimentId", "pva")
                client.put(f"{P}Snapshot:Pre", 1)
                client.put(f"{P}Record:During", 1)
                start = time.time()

                def since(field: str) -> list[tuple[Any, float, int, int]]:
                    return [u for u in bare.seen[field] if u[1] > start]

                # the temperature's triangle (8 s) goes through HIGH and HIHI and back
                procs.wait_until(
                    lambda: (
                        {u[2] for u in since("temperature")} >= {0, 1, 2}
                        and len(since("mode")) >= 3
                    ),
                    30,
                    "the temperature through its alarms while recording",
                )
                time.sleep(0.3)  # condition met; a few more updates recorded
                client.put(f"{P}Record:During", 0)
                client.put(f"{P}Snapshot:Post", 1)
                client.put(f"{P}EndOfExperiment", 1)
                path = Path(client.get(f"{P}LastFile"))
        finally:
            bare.close()
    with h5py.File(path, "r") as f:
        during = f["during_exposure/instrument/heater"]
        for field in FIELDS:
            got = _log(during[field])
            assert len(got) >= 4, (field, got)
            first, last = got[0][1], got[-1][1]
            # every update the bare client saw in the recording's span, none more, none less
            seen = [u for u in bare.seen[field] if first - 5e-6 <= u[1] <= last + 5e-6]
            assert len(seen) == len(got), (field, len(seen), len(got))
            for (value, t, sev, status), (bvalue, bt, bsev, bstatus) in zip(got, seen, strict=True):
                assert np.array_equal(np.asarray(value), np.asarray(bvalue)), field
                assert abs(t - bt) < 5e-6 and (sev, status) == (bsev, bstatus), field
            assert provenance(during[field])["source_pv"] == f"pva://{pva_prefix}{names[field]}"
        temps = _log(during["temperature"])
        # the alarms as CA says them: MINOR HIGH (4), MAJOR HIHI (3)
        assert {(s, a) for _, _, s, a in temps} >= {(0, 0), (1, 4), (2, 3)}
        assert during["temperature"]["value"].attrs["units"] == "K"
        # one file, each reading's protocol in its provenance: the CA ones bare
        pre = f["pre_exposure/instrument"]
        assert provenance(pre["heater/temperature"])["source_pv"].startswith("pva://")
        assert provenance(pre["monochromator/energy"])["source_pv"] == f"{sim[0]}mono:energy:RBV"
        mode = pre["heater/mode"][()]
        assert int(mode) in (0, 1, 2)


def test_check_reports_the_pva_channels_with_their_units_and_types(
    sim: tuple[str, int], log_dir: Path, tmp_path: Path
) -> None:
    """``assonant-ioc check`` on a config of CA and PVA channels and a camera's frames over
    PVA: the PVA ones connected, with the server's units and their normative type."""
    import json
    import os
    import subprocess
    import sys

    from tests.system.conftest import REPO

    pva_prefix = procs.new_prefix("PVA")
    config = tmp_path / "mixed.yaml"
    text = (REPO / "configs" / "sim.yaml").read_text()
    camera = (  # a camera's frames over PVA (NTNDArray) too
        "  - name: camera\n    class: Detector\n"
        f'    frames: {{array_pv: "pva://{pva_prefix}cam:Pva1:Image"}}\n'
    )
    extra = _heater(pva_prefix) + camera
    config.write_text(text.replace("instrument:\n", "instrument:\n" + extra, 1))
    with procs.sim_pva(log_dir, pva_prefix) as (_tcp, udp):
        env = os.environ | procs.ca_client_env(sim[1]) | pva_env.pva_client_env(udp)
        command = [sys.executable, "-m", "assonant_ioc.cli", "check", "--config", str(config)]
        done = subprocess.run(
            [*command, "--macro", f"BL={sim[0]}", "--json", "--timeout", "20"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr
    rows = {r["where"]: r for r in json.loads(done.stdout)["rows"]}
    temperature = rows["heater/temperature"]
    assert temperature["pv"] == f"pva://{pva_prefix}temp" and temperature["connected"]
    assert (temperature["egu"], temperature["units"]) == ("K", "ok")
    assert temperature["type"] == "epics:nt/NTScalar:1.0"
    assert rows["heater/mode"]["type"] == "epics:nt/NTEnum:1.0" and rows["heater/mode"]["connected"]
    assert rows["heater/spectrum"]["type"] == "epics:nt/NTScalarArray:1.0"
    assert rows["monochromator/energy"]["connected"]  # the CA ones beside them
    frames = rows["camera/frames"]
    assert frames["pv"] == f"pva://{pva_prefix}cam:Pva1:Image" and frames["connected"]
    assert frames["type"] == "epics:nt/NTNDArray:1.0"
