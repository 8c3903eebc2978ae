"""An operator's first hour: settings survive a restart, health PVs, the panel, check, inspect."""

from __future__ import annotations

import time
from pathlib import Path

from assonant_ioc import __version__
from assonant_ioc.sim import procs
from tests.system.conftest import start_service


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
    with start_service(log_dir, tmp_path, sim, ["--no-kafka"]) as (client, P, _dir, _proc):
        assert client.get(f"{P}Version") == __version__
        started = client.get(f"{P}StartTime")
        assert started.startswith(time.strftime("%Y-", time.gmtime()))
        procs.wait_until(lambda: client.get(f"{P}Uptime") >= 2, 10, "uptime")
        assert 10 < client.get(f"{P}MemUsed") < 2000  # MB, a live Python process
        assert 0 <= client.get(f"{P}CPULoad") <= 200
        beat = client.get(f"{P}Heartbeat")
        procs.wait_until(lambda: client.get(f"{P}Heartbeat") > beat, 5, "heartbeat")
