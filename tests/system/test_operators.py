"""An operator's first hour: settings survive a restart, health PVs, the panel, check, inspect."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from caproto import ChannelType
from caproto.threading.client import Context

from assonant_ioc import __version__
from assonant_ioc.ioc.panel import pv_specs, render_panel
from assonant_ioc.ioc.server import AssonantIOC
from assonant_ioc.sim import procs
from assonant_ioc.sim.procs import free_port
from tests.system.conftest import REPO, start_service


def test_settings_and_file_counter_survive_a_restart(
    sim: tuple[str, int], log_dir: Path, tmp_path: Path
) -> None:
    prefix = procs.new_prefix("AS")
    other_dir = tmp_path / "elsewhere" / "a_second_directory_with_a_long_name_for_the_files"
    settings = {
        "ExperimentId": "proposal-20261234",
        "SampleName": "lysozyme, batch 3",
        "DataDir": str(other_dir),
        "FileName": "{experiment_id}_{sample}_{counter:03d}.nxs",
    }
    with start_service(log_dir, tmp_path, sim, ["--no-kafka"], prefix=prefix) as (client, P, *_):
        for pv, value in settings.items():
            client.put(f"{P}{pv}", value)
        client.put(f"{P}Snapshot:Pre", 1)
        client.put(f"{P}EndOfExperiment", 1)
        first = Path(client.get(f"{P}LastFile"))
        assert first.name == "proposal-20261234_lysozyme, batch 3_001.nxs"
    archived = tmp_path / "archive"
    archived.mkdir()
    first.rename(archived / first.name)  # the file is moved away: its name must not come back

    with start_service(log_dir, tmp_path, sim, ["--no-kafka"], prefix=prefix) as (client, P, *_):
        for pv, value in settings.items():
            assert client.get(f"{P}{pv}") == value, pv
        client.put(f"{P}Snapshot:Pre", 1)
        client.put(f"{P}EndOfExperiment", 1)
        second = Path(client.get(f"{P}LastFile"))
        assert second.parent == other_dir
        assert second.name == "proposal-20261234_lysozyme, batch 3_002.nxs"


def test_health_pvs(sim: tuple[str, int], log_dir: Path, tmp_path: Path) -> None:
    with start_service(log_dir, tmp_path, sim, ["--no-kafka"]) as (client, P, _dir, proc):
        assert client.get(f"{P}Version") == __version__
        started = client.get(f"{P}StartTime")
        assert started.startswith(time.strftime("%Y-", time.gmtime()))
        procs.wait_until(lambda: client.get(f"{P}Uptime") >= 2, 10, "uptime")
        pid = proc.popen.pid
        # MemUsed: the IOC's resident memory (MB), as the kernel counts it
        page_mb = os.sysconf("SC_PAGE_SIZE") / 1e6
        rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page_mb
        assert client.get(f"{P}MemUsed") == pytest.approx(rss, rel=0.1)

        # CPULoad: the IOC's CPU time per wall time (%), each second; over 3 s its mean is
        # the kernel's count for that process over the same 3 s
        def cpu_s() -> float:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

        # a known load: clients reading a PV as fast as the IOC answers, over circuits of
        # their own, so a CPULoad stuck at 0 cannot pass
        stop = threading.Event()
        contexts = [Context() for _ in range(4)]
        pvs = [ctx.get_pvs(f"{P}ExperimentId")[0] for ctx in contexts]
        for pv in pvs:
            pv.wait_for_connection(timeout=10)

        def load(pv: Any) -> None:
            while not stop.is_set():
                pv.read(timeout=10)

        writers = [threading.Thread(target=load, args=(pv,), daemon=True) for pv in pvs]
        for writer in writers:
            writer.start()
        try:
            uptime = client.get(f"{P}Uptime")  # from the next second on: a whole window
            procs.wait_until(lambda: client.get(f"{P}Uptime") >= uptime + 1, 5, "a second")
            cpu0, wall0, loads = cpu_s(), time.monotonic(), []
            for n in range(1, 4):
                procs.wait_until(
                    lambda n=n: client.get(f"{P}Uptime") >= uptime + 1 + n, 5, "a second"
                )
                loads.append(client.get(f"{P}CPULoad"))
            kernel = 100 * (cpu_s() - cpu0) / (time.monotonic() - wall0)
        finally:
            stop.set()
            for writer in writers:
                writer.join(timeout=15)
            for ctx in contexts:
                ctx.disconnect()
        # the load is there, as the kernel counts it: well above the tolerance, so a CPULoad
        # stuck at 0 fails
        assert kernel >= 20, kernel
        assert sum(loads) / len(loads) == pytest.approx(kernel, abs=10), (loads, kernel)
        beat = client.get(f"{P}Heartbeat")
        procs.wait_until(lambda: client.get(f"{P}Heartbeat") > beat, 5, "heartbeat")


PANEL = REPO / "panels" / "assonant_ioc.bob"


def _panel_widgets() -> list[ET.Element]:
    return list(ET.parse(PANEL).getroot().iter("widget"))


def _pv_of(w: ET.Element) -> str | None:
    el = w.find("pv_name")
    return el.text if el is not None else None


def test_committed_panel_is_what_the_generator_makes() -> None:
    assert PANEL.read_text(encoding="utf-8") == render_panel(), (
        "panels/assonant_ioc.bob drifted from the IOC: run `assonant-ioc panel`"
    )


def test_panel_matches_the_running_ioc(sim: tuple[str, int], log_dir: Path, tmp_path: Path) -> None:
    widgets = _panel_widgets()
    on_panel = {_pv_of(w) for w in widgets} | {
        el.text for w in widgets for el in w.findall("actions/action/pv_name")
    }
    on_panel.discard(None)
    assert all(pv.startswith("$(P)") for pv in on_panel if pv)
    names = {pv.removeprefix("$(P)") for pv in on_panel if pv}
    # every command, setting, status and health PV is on the panel
    interface = {
        *AssonantIOC.COMMANDS,
        *AssonantIOC.SETTINGS,
        *AssonantIOC.STATUS,
        *AssonantIOC.HEALTH,
    }
    assert interface <= names, interface - names
    # ... and those lists (and devIocStats' names of the health PVs, which the panel shows
    # under the IOC's own) name every PV the IOC has, so a new PV cannot miss the panel
    every = interface | set(AssonantIOC.IOCSTATS)
    assert {prop.pvspec.name for prop in AssonantIOC._pvs_.values()} == every

    with start_service(log_dir, tmp_path, sim, ["--no-kafka", "--list-pvs"]) as (
        client,
        P,
        _dir,
        proc,
    ):
        listed = {
            line.strip()
            for line in proc.log_path.read_text().splitlines()
            if line.strip().startswith(P) and " " not in line.strip()  # one PV a line
        }
        for name in names:
            assert f"{P}{name}" in listed, name  # in --list-pvs ...
            client.get(f"{P}{name}")  # ... and answering CA

    specs = pv_specs()
    for w in widgets:
        pv = _pv_of(w)
        if pv is None:
            assert w.get("type") == "label"
            continue
        spec = specs[pv.removeprefix("$(P)")]
        kind = w.get("type")
        fmt = w.findtext("format")
        if spec.name in AssonantIOC.COMMANDS:
            assert kind == "action_button"
            values = [a.findtext("value") for a in w.findall("actions/action[@type='write_pv']")]
            assert values and set(values) <= {"0", "1"}
            if spec.name == "Abort":
                assert w.findtext("show_confirm_dialog") == "true"
        elif spec.dtype == ChannelType.CHAR:  # long strings: text in String format
            assert kind in {"textupdate", "textentry"} and fmt == "6", spec.name
        elif spec.dtype == ChannelType.ENUM:
            assert kind in {"led", "multi_state_led", "textupdate"}, spec.name
            if kind == "multi_state_led":
                labels = [s.findtext("label") for s in w.findall("states/state")]
                assert labels == spec.cls_kwargs["enum_strings"]
        else:  # numbers and short strings
            assert kind in {"textupdate", "textentry"} and fmt != "6", spec.name
        if spec.read_only:
            assert kind != "textentry", f"{spec.name} is read-only but editable on the panel"


CHECK_YAML = """\
beamline: CHECK
macros: {BL: "X:"}
instrument:
  - name: monochromator
    class: Monochromator
    fields:
      energy: {pv: "$(BL)mono:energy:RBV", units: eV}
      wavelength: {pv: "$(BL)mono:wavelength", units: Å}
  - name: ghost
    class: Sensor
    fields:
      value: {pv: "$(BL)no:such:pv", units: V}
sample:
  name: sample
  axes:
    x: {pv: "$(BL)smp:x:RBV", units: millimeter}
    rx: {pv: "$(BL)smp:rx:RBV", units: degree, type: rotation}
"""


def _check(sim: tuple[str, int], config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ) | procs.ca_client_env(sim[1])
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "assonant_ioc.cli",
            "check",
            "--config",
            str(config),
            "--macro",
            f"BL={sim[0]}",
            "--timeout",
            "5",
            *extra,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_check_reports_missing_pvs_and_unit_mismatches(
    sim: tuple[str, int], tmp_path: Path
) -> None:
    config = tmp_path / "check.yaml"
    config.write_text(CHECK_YAML, encoding="utf-8")
    out = _check(sim, config, "--json")
    assert out.returncode == 1, out.stderr
    report = json.loads(out.stdout)
    rows = {r["where"]: r for r in report["rows"]}
    assert not rows["ghost/value"]["connected"]
    assert rows["monochromator/energy"]["egu"] == "keV"
    assert rows["monochromator/energy"]["units"] == "MISMATCH"  # eV declared, keV served
    assert rows["monochromator/wavelength"]["units"] == "ok"  # Å and angstrom agree
    assert rows["sample/x"]["units"] == "ok"  # millimeter and mm agree
    assert rows["sample/rx"]["units"] == "ok"  # degree and deg agree
    assert rows["sample/x"]["type"] == "DOUBLE"
    assert report["summary"] == {
        "channels": 5,
        "pvs": 5,
        "connected": 4,
        "missing": 1,
        "unit_mismatches": 1,
    }

    text = _check(sim, config)
    assert text.returncode == 1
    lines = {line.split()[0]: line for line in text.stdout.splitlines() if line.strip()}
    assert "MISSING" in lines[f"{sim[0]}no:such:pv"]
    assert "MISMATCH" in lines[f"{sim[0]}mono:energy:RBV"]
    assert "5 PVs (5 fields/axes): 4 connected, 1 missing, 1 unit mismatch(es)" in text.stdout
    assert "\r" not in text.stderr  # no progress bar redrawn into a file (stderr is a pipe)


def test_check_passes_on_the_sim_config(sim: tuple[str, int]) -> None:
    out = _check(sim, REPO / "configs" / "sim.yaml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "15 connected, 0 missing, 0 unit mismatch(es)" in out.stdout


def test_inspect_prints_the_tree(tmp_path: Path) -> None:
    from assonant_ioc.nexus import write_experiment
    from tests.unit.factories import experiment

    path = write_experiment(experiment(), tmp_path / "x.nxs")
    out = subprocess.run(
        [sys.executable, "-m", "assonant_ioc.cli", "inspect", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = [line.strip() for line in out.stdout.splitlines()]
    assert lines[0] == "x.nxs:NXroot"
    assert "mono:NXmonochromator" in lines
    # each captured value with the PV it came from
    assert "energy [float64, scalar] = 12 keV <- BL:E" in lines
    assert "spectrum [float64, 3] = [1.5, 2.5, 3.5] counts <- BL:wave" in lines
    assert "frames [int64, scalar] = 7 <- BL:n" in lines
    assert "lost [float64, scalar] = nan <- BL:gone" in lines
    assert "x:NXlog <- BL:x" in lines
    assert "value [float64, 5] = [0, 1, 2, 3, 4] mm" in lines
    assert "provenance:NXcollection" in lines
    # --no-provenance: each provenance collection one line, every value still with its PV
    short = subprocess.run(
        [sys.executable, "-m", "assonant_ioc.cli", "inspect", "--no-provenance", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.splitlines()
    folded = [line.strip() for line in short if line.strip().startswith("provenance:")]
    assert folded and all(line.endswith("objects; --provenance shows)") for line in folded)
    assert "energy [float64, scalar] = 12 keV <- BL:E" in [line.strip() for line in short]
    assert len(short) < len(lines)


def test_the_command_says_what_is_wrong_in_one_line(tmp_path: Path) -> None:
    """A user's mistake is one line naming the cause, exit status 2, never a traceback."""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "assonant_ioc.cli", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    listed = run("--help")
    assert listed.returncode == 0
    for command in ("serve", "check", "inspect", "panel"):
        assert f"assonant-ioc {command}" in listed.stdout or command == "serve"
    assert "[serve]" in listed.stdout
    not_hdf5 = tmp_path / "notes.txt"
    not_hdf5.write_text("not a NeXus file")
    for args, says in (
        (("inspect", str(tmp_path / "nope.nxs")), "no such file"),
        (("inspect", str(not_hdf5)), "not an HDF5 (NeXus) file"),
        (("catalog", "backfill", str(tmp_path / "nope")), "not a directory"),
        (("catalog", "consume", "--catalog", str(tmp_path / "c.db")), "--kafka-bootstrap"),
        (("catalog", "search", "--url", f"http://127.0.0.1:{free_port()}"), "cannot reach"),
        (  # a bad time is said before anything is asked (no catalog answers there)
            ("catalog", "search", "--url", f"http://127.0.0.1:{free_port()}", "--since", "yday"),
            "Invalid isoformat string: 'yday'",
        ),
        (("nosuchcmd",), "unknown command 'nosuchcmd' (commands: serve, check, inspect"),
        (("inspect", str(tmp_path)), "is a directory, not a file"),
        (
            ("catalog", "serve", "--read", str(tmp_path), "--catalog", str(tmp_path / "c.db")),
            "no API key",
        ),
    ):
        done = run(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.strip().count("\n") == 0 and says in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    assert "PV prefix" in run("serve", "--help").stdout
    # every subcommand has its --help
    for command in ("serve", "check", "inspect", "panel", "configs", "demo", "sim", "catalog"):
        helped = run(command, "--help")
        assert helped.returncode == 0 and "usage" in helped.stdout.lower(), command
    # a config that is not there: one problem, the shipped configs named, status 2
    missing = run("--config", str(tmp_path / "absent.yaml"))
    assert missing.returncode == 2 and "shipped configs: " in missing.stderr
    assert "Traceback" not in missing.stderr
    # a missing extra: one line naming the extra (phoebusgen made unimportable)
    blocker = tmp_path / "no_extras" / "phoebusgen"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('not installed')\n")
    no_panel = subprocess.run(
        [sys.executable, "-m", "assonant_ioc.cli", "panel", "-o", str(tmp_path / "p.bob")],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ | {"PYTHONPATH": os.pathsep.join([str(blocker.parent), str(REPO)])},
    )
    assert no_panel.returncode == 2 and "assonant-ioc[panel]" in no_panel.stderr
    assert no_panel.stderr.strip().count("\n") == 0, no_panel.stderr
    # without the catalog extra (tiled made unimportable): one line, even for --help
    tiled = tmp_path / "no_tiled" / "tiled"
    tiled.mkdir(parents=True)
    (tiled / "__init__.py").write_text("raise ImportError('not installed')\n")
    for args in (("catalog", "--help"), ("catalog", "search"), ("demo", "--catalog")):
        no_tiled = subprocess.run(
            [sys.executable, "-m", "assonant_ioc.cli", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=os.environ | {"PYTHONPATH": os.pathsep.join([str(tiled.parent), str(REPO)])},
        )
        assert no_tiled.returncode == 2, (args, no_tiled.stderr)
        assert no_tiled.stderr.strip().count("\n") == 0 and "[catalog]" in no_tiled.stderr
    # a relative --data-dir: the log says what it became (a CA write of one is refused)
    relative = subprocess.run(
        [
            sys.executable,
            "-c",
            "import logging, sys; logging.basicConfig(); "
            "from assonant_ioc.ioc.main import _parse_args, build_config; "
            "args, _, _ = _parse_args(['--config', 'sim', '--no-kafka', '--data-dir', 'rel/dir']); "
            "print(build_config(args).data_dir)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert relative.stdout.strip() == str(tmp_path / "rel" / "dir"), relative.stderr
    assert f"--data-dir 'rel/dir' is relative: the files go to {tmp_path / 'rel' / 'dir'}" in (
        relative.stderr
    )
    # sim --help names --kind; the configs' descriptions are never cut mid-word
    assert "--kind caproto|c" in run("sim", "--help").stdout
    for line in run("configs").stdout.splitlines()[:-1]:
        name, description = line.split(maxsplit=1)
        (path,) = (REPO / "configs").glob(f"{name}.*")
        first = path.read_text().splitlines()[0]
        shown = description.removesuffix(" ...")
        assert first.lstrip("# ").startswith(shown), (line, first)
        assert description.endswith(" ...") or first.lstrip("# ").rstrip(", ") == shown


@pytest.mark.timeout(400)  # its time on a loaded 2-core machine, with room
def test_the_demo_runs_and_shows_an_nxtomo_file_and_its_event(tmp_path: Path) -> None:
    """What the README's first command runs: broker, camera, beamline, IOC, one experiment;
    with --catalog, the catalog consumer and tiled's server too, and the search that finds it."""
    out = tmp_path / "demo-output"
    done = subprocess.run(  # from any directory: nothing of the checkout is needed
        [
            sys.executable,
            "-m",
            "assonant_ioc.cli",
            "demo",
            "--data-dir",
            "demo-output",
            "--catalog",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (master,) = out.glob("*.nx")  # the extension nabu takes
    assert '"definition": "NXtomo"' in done.stdout
    assert f'"file_path": "{master}"' in done.stdout
    tree = [line for line in done.stdout.splitlines() if line.endswith(":NXentry")]
    assert tree == ["pre_exposure:NXentry", "during_exposure:NXentry", "post_exposure:NXentry"]
    assert len(list((out / "detector").rglob("*.h5"))) == 3  # dark, flat, projections
    assert list((out / "logs").iterdir()), "the logs are kept beside the file"
    found = done.stdout.split("the data catalog finds it by its sample", 1)[1]
    assert "curl -H 'Authorization: Apikey " in found and "search/?filter" in found
    assert f"{master} (ok, sha256 " in found
    # the dump ends in plain words, the validators' counts explained, not as its last words
    plain = done.stdout.rsplit("in plain words:", 1)[1]
    assert f"the experiment is in {master}" in plain
    assert "not a fault of the file" in plain and plain.rstrip().endswith("on a page.")


def test_a_missing_argument_is_one_line_not_the_usage_block() -> None:
    for args, needs in (
        (("serve",), "--config"),
        (("inspect",), "file"),
        (("catalog", "serve"), "--read"),
        (("process",), "--processed-root"),
        (("bluesky",), "--config"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "assonant_ioc.cli", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        said = done.stderr.strip()
        assert done.returncode == 2 and "\n" not in said and "usage:" not in said, said
        assert f"the following arguments are required: {needs}" in said, said
        assert said.endswith("--help)"), said
