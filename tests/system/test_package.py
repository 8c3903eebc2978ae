"""The package as a new user gets it: the wheel installed with the ``demo`` and ``catalog``
extras into a fresh venv outside the checkout runs the demo (with the data catalog) to the
end, and its C IOC serves the beamline's PVs."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from assonant_ioc.sim import procs
from tests.system.conftest import REPO


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package built as a wheel, once for this module's tests."""
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = dist.glob("assonant_ioc-*.whl")
    return built


def _outside(env: dict[str, str]) -> dict[str, str]:
    """The environment without anything that points into the checkout."""
    return {k: v for k, v in env.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


@pytest.mark.timeout(900)  # its time on a loaded 2-core machine, with room
def test_the_wheel_in_a_fresh_venv_runs_the_demo_and_the_c_ioc(
    wheel: Path, tmp_path: Path, log_dir: Path
) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    env = _outside(dict(os.environ))
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", f"{wheel}[demo,catalog]"],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    elsewhere = tmp_path / "somewhere"
    elsewhere.mkdir()
    demo = subprocess.run(
        [str(env_dir / "bin" / "assonant-ioc"), "demo", "--data-dir", "out", "--catalog"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=elsewhere,
        env=env,
    )
    assert demo.returncode == 0, demo.stderr[-3000:]
    (master,) = (elsewhere / "out").glob("*.nx")
    assert f'"file_path": "{master}"' in demo.stdout
    assert '"definition": "NXtomo"' in demo.stdout
    assert str(REPO) not in demo.stdout  # nothing of the checkout was used
    assert f"{master} (ok, sha256 " in demo.stdout  # the catalog found it (tiled from the venv)

    prefix, port = procs.new_prefix("WHL"), procs.free_port()
    args = [str(env_dir / "bin" / "assonant-ioc"), "sim", "--kind", "c", "--prefix", prefix]
    with procs.running("sim-c-from-wheel", args, procs.ca_server_env(port), log_dir) as proc:
        client = procs.ca_client_env(port)
        procs.wait_until(
            lambda: procs.ca_answers(f"{prefix}smp:x:RBV", client), 30, "the C IOC", proc
        )
        assert procs.ca_get(f"{prefix}mono:energy:RBV", client) > 0


def test_the_package_carries_its_configs_and_the_c_iocs_database(
    wheel: Path, tmp_path: Path
) -> None:
    """A wheel has what the service, the sim beamline and the demo need at run time, and a
    config is reachable by name."""
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in ("configs/sim.yaml", "configs/mogno.yaml", "configs/manaca_pv_map.csv",
                    "sim/db/sim_beamline.substitutions", "sim/db/motor.db"):  # fmt: skip
        assert f"assonant_ioc/{shipped}" in names, shipped
    listed = subprocess.run(
        [sys.executable, "-m", "assonant_ioc.cli", "configs"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=True,
    ).stdout
    names_listed = {line.split()[0] for line in listed.splitlines()}
    assert {"sim", "sim_tomo", "mogno", "manaca"} <= names_listed
    from assonant_ioc.config import load_config

    assert load_config("mogno").definition == "NXtomo"  # by name, from any directory


def _resolved(wheel: Path, extras: str, tmp_path: Path) -> set[str]:
    """What pip would install for the wheel with ``extras`` and the pinned versions, resolved
    from the package index (nothing installed)."""
    import json

    report = tmp_path / f"report-{extras or 'core'}.json"
    pip = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "-q"]
    pins = ["-c", str(REPO / "constraints.txt")]
    spec = f"{wheel}[{extras}]" if extras else str(wheel)
    resolved = subprocess.run(
        [*pip, *pins, "--report", str(report), spec],
        capture_output=True,
        text=True,
        timeout=300,
        env=_outside(dict(os.environ)),
    )
    assert resolved.returncode == 0, resolved.stderr[-3000:]
    return {i["metadata"]["name"].lower() for i in json.loads(report.read_text())["install"]}


def _image_extras(target: str) -> str:
    """The extras the Dockerfile's stage ``target`` installs (its pinned pip install)."""
    import re

    stages = re.split(r"^FROM ", (REPO / "Dockerfile").read_text(), flags=re.M)
    (stage,) = [s for s in stages if s.split("\n", 1)[0].endswith(f" AS {target}")]
    (extras,) = re.findall(
        r'pip install --no-cache-dir -c constraints.txt "\.\[([a-z,]+)\]"', stage
    )
    return str(extras)


CATALOG_STACK = {"tiled", "fastapi", "uvicorn", "sqlalchemy", "aiosqlite", "dask", "duckdb"}


def test_the_core_and_the_ioc_image_bring_no_catalog_stack(wheel: Path, tmp_path: Path) -> None:
    """The IOC alone (no extra) installs without scipy, lxml, nexusformat or pynxtools; the
    IOC's image (its Dockerfile target, with the validators) without the catalog's stack,
    which the catalog's image has."""
    core = _resolved(wheel, "", tmp_path)
    assert {"caproto", "pyepics", "h5py", "aiokafka", "pint"} <= core
    assert core & ({"scipy", "lxml", "nexusformat", "pynxtools"} | CATALOG_STACK) == set()
    ioc = _image_extras("ioc")
    assert ioc == "validate,sim"
    packages = _resolved(wheel, ioc, tmp_path)
    assert {"pynxtools", "nexusformat", "epicscorelibs"} <= packages
    assert packages & CATALOG_STACK == set()
    assert "catalog" in _image_extras("catalog").split(",")
