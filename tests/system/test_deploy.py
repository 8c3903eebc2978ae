"""The deployment files and the command line, as an operator meets them."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from assonant_ioc.events import EVENT_SCHEMA_PATH

REPO = Path(__file__).resolve().parents[2]


def _compose() -> list[str] | None:
    """A compose client (``docker compose`` or ``docker-compose``), or None."""
    if (
        shutil.which("docker")
        and subprocess.run(
            ["docker", "compose", "version"], capture_output=True, check=False
        ).returncode
        == 0
    ):
        return ["docker", "compose"]
    exe = shutil.which("docker-compose")
    return [exe] if exe else None


def _compose_services() -> dict[str, Any]:
    """The compose file's services as the compose client resolves them (``config``), or,
    without a client (no root to install one), as the file states them, checked against
    what the Compose spec requires of each service and volume."""
    client = _compose()
    path = REPO / "docker-compose.yml"
    if client is not None:
        out = subprocess.run(
            [*client, "-f", str(path), "config"],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=os.environ | {"TILED_API_KEY": "test-key"},
        )
        assert out.returncode == 0, out.stderr
        services: dict[str, Any] = yaml.safe_load(out.stdout)["services"]
        return services
    if os.environ.get("CI"):  # CI installs a compose client: its own reading must run
        pytest.fail("no compose client in CI (.ci/run installs Debian's docker-compose)")
    doc = yaml.safe_load(path.read_text())
    assert set(doc) <= {"services", "volumes", "networks", "configs", "secrets", "name"}
    named = set(doc.get("volumes") or {})
    for name, service in doc["services"].items():
        assert "image" in service or "build" in service, name
        for dep in service.get("depends_on") or {}:
            assert dep in doc["services"], (name, dep)
        for volume in service.get("volumes") or []:
            source = volume.split(":")[0] if isinstance(volume, str) else volume["source"]
            assert source.startswith(("/", ".")) or source in named, (name, volume)
    return dict(doc["services"])


def test_docker_compose_file_parses() -> None:
    services = _compose_services()
    assert set(services) == {"kafka", "sim-beamline", "assonant-ioc", "catalog", "catalog-server"}
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    ioc_env = services["assonant-ioc"]["environment"]
    assert ioc_env["EPICS_CA_ADDR_LIST"] == "sim-beamline"
    assert "kafka:9092" in services["assonant-ioc"]["command"]
    # two images, each built by one service (the Dockerfile's targets) and run by another:
    # compose pulls nothing of ours
    images = {n: svc.get("image", "") for n, svc in services.items()}
    assert images | {"kafka": ""} == {
        "kafka": "",
        "sim-beamline": "assonant-ioc:latest",
        "assonant-ioc": "assonant-ioc:latest",
        "catalog": "assonant-catalog:latest",
        "catalog-server": "assonant-catalog:latest",
    }
    builds = {n: svc["build"] for n, svc in services.items() if "build" in svc}
    assert {n: b["target"] for n, b in builds.items()} == {
        "assonant-ioc": "ioc",
        "catalog": "catalog",
    }
    # what must outlive the container is on volumes: files, state (journal, outbox,
    # autosave) and Kafka's log; the broker is reachable from the host
    ioc_command = services["assonant-ioc"]["command"]
    assert "/state/autosave.json" in ioc_command and "/state" in ioc_command
    assert _targets(services["assonant-ioc"]["volumes"]) == {"/data", "/state"}
    assert _targets(services["kafka"]["volumes"]) == {"/var/lib/kafka/data"}
    ports = services["kafka"]["ports"]
    assert any("29092" in (p if isinstance(p, str) else str(p.get("published"))) for p in ports)
    # the catalog: its database outlives the container, it reads the IOC's files, and the
    # server takes its API key from the host, never from the file
    consume, serve = services["catalog"]["command"], services["catalog-server"]["command"]
    assert consume[:2] == ["catalog", "consume"] and "kafka:9092" in consume
    assert consume[consume.index("--read") + 1] == "/data"  # only the IOC's files registered
    assert serve[:2] == ["catalog", "serve"] and "/data" in serve
    for name in ("catalog", "catalog-server"):
        assert _targets(services[name]["volumes"]) == {"/data", "/state"}
        assert "/state/catalog.db" in services[name]["command"]
    key = services["catalog-server"]["environment"]["TILED_SINGLE_USER_API_KEY"]
    assert key in ("${TILED_API_KEY:?set TILED_API_KEY, the catalog's API key}", "test-key")


def _targets(volumes: list[Any]) -> set[str]:
    """Mount points, from the long syntax (compose v2) or the short one (v1)."""
    return {v["target"] if isinstance(v, dict) else v.split(":")[1] for v in volumes}


def _stages() -> dict[str, dict[str, str]]:
    """The Dockerfile's stages by name: each instruction's (last) arguments."""
    joined = (REPO / "Dockerfile").read_text().replace("\\\n", " ")  # continuation lines
    stages: dict[str, dict[str, str]] = {}
    for line in joined.splitlines():
        word, _, rest = line.partition(" ")
        if word == "FROM":
            current = stages.setdefault(rest.rsplit(" AS ", 1)[-1], {})
        elif word.isupper() and word.isalpha():
            current[word] = f"{current.get(word, '')} {rest}".strip()
    return stages


def test_the_images_run_as_a_user_with_their_state_on_volumes() -> None:
    """Two images: the IOC's (the default target, last) and the catalog's, each pinned, each
    running as the user ``assonant`` with the files and its state on volumes."""
    stages = _stages()
    assert list(stages) == ["base", "catalog", "ioc"]  # a plain `docker build .` is the IOC
    base, ioc, catalog = stages["base"], stages["ioc"], stages["catalog"]
    assert "useradd --system --uid 10001" in base["RUN"]
    assert "README.md constraints.txt ./" in base["COPY"]
    for image in (ioc, catalog):
        assert image["USER"] == "assonant"
        assert image["ENTRYPOINT"] == '["assonant-ioc"]'
        assert "/data" in image["VOLUME"] and "/state" in image["VOLUME"]
        # a pinned build: the versions the tests ran with, from the same file
        assert image["RUN"].startswith("pip install --no-cache-dir -c constraints.txt")
    assert '".[validate,sim]"' in ioc["RUN"] and '".[catalog,process,page]"' in catalog["RUN"]
    assert "5064/tcp" in ioc["EXPOSE"] and "5064/udp" in ioc["EXPOSE"]
    assert "5065/udp" in ioc["EXPOSE"]
    assert "8000/tcp" in catalog["EXPOSE"] and "5064" not in catalog["EXPOSE"]
    assert "assonant_ioc.ioc.healthcheck" in ioc["HEALTHCHECK"]
    assert "HEALTHCHECK" not in catalog  # the compose file gives each catalog service its own
    assert "-c constraints.txt" in (REPO / "scripts" / "setup.sh").read_text()
    pins = [
        line
        for line in (REPO / "constraints.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert pins and all("==" in line for line in pins), pins[:5]
    names = {line.split("==")[0].lower() for line in pins}
    assert {"caproto", "h5py", "numpy", "aiokafka", "pynxtools", "tiled"} <= names


def _compose_check(
    service: str, port: int, extra: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """The service's healthcheck, run as its container runs it: the compose file's environment
    for that service (its CA ports moved to this test's server), nothing else of EPICS."""
    import yaml

    spec = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"][service]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPICS_")}
    env |= {k: str(v).replace("5064", str(port)) for k, v in spec["environment"].items()}
    test = spec.get("healthcheck", {}).get("test")
    args = test[1:] if test else ["python", "-m", "assonant_ioc.ioc.healthcheck"]  # the image's
    args = [sys.executable if a == "python" else a for a in args]
    prefix = extra.pop("SIM:", "SIM:")  # the compose file's beamline prefix, moved to the test's
    return subprocess.run(
        [a.replace("SIM:", prefix) for a in args],
        env=env | extra,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_each_service_s_healthcheck_in_its_compose_environment(
    sim: tuple[str, int], log_dir: Path, tmp_path: Path
) -> None:
    """The IOC's container (EPICS_CA_ADDR_LIST names the beamline, not itself) is healthy
    while its heartbeat moves; unhealthy when the heartbeat alone stops (the IOC still answers)
    and when it is frozen; the sim beamline's container checks the beamline, not the IOC."""
    from tests.system.conftest import start_service

    hold = tmp_path / "hold-heartbeat"
    os.environ["ASSONANT_HEARTBEAT_HOLD"] = str(hold)
    try:
        with start_service(log_dir, tmp_path, sim, ["--no-kafka"]) as (client, P, _dd, proc):
            port = int(client.env["EPICS_CA_ADDR_LIST"].split()[0].rsplit(":", 1)[1])
            ioc = {"ASSONANT_PREFIX": P}
            assert _compose_check("assonant-ioc", port, dict(ioc)).returncode == 0
            hold.touch()  # the heartbeat alone stops: the IOC answers, but is not healthy
            stuck = _compose_check("assonant-ioc", port, dict(ioc))
            assert stuck.returncode == 1 and "does not advance" in stuck.stderr, stuck.stderr
            assert client.get(f"{P}Status")  # it does answer
            hold.unlink()
            assert _compose_check("assonant-ioc", port, dict(ioc)).returncode == 0
            proc.popen.send_signal(signal.SIGSTOP)  # frozen: answers nothing, beats nothing
            try:
                frozen = _compose_check("assonant-ioc", port, dict(ioc))
                assert frozen.returncode == 1 and "Timeout" in frozen.stderr, frozen.stderr
            finally:
                proc.popen.send_signal(signal.SIGCONT)
        beamline = _compose_check("sim-beamline", sim[1], {"SIM:": sim[0]})
        assert beamline.returncode == 0, beamline.stderr
    finally:
        os.environ.pop("ASSONANT_HEARTBEAT_HOLD", None)


def test_event_schema_is_a_valid_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(json.loads(EVENT_SCHEMA_PATH.read_text()))


def test_bad_config_stops_the_ioc_with_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "beamline: X\ninstrument:\n  - name: a\n    class: Nope\n"
        "  - name: b\n    class: Slit\n    fields:\n      gap: {units: mm}\n"
    )
    out = subprocess.run(
        [sys.executable, "-m", "assonant_ioc.ioc.main", "--config", str(bad), "--no-kafka"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode != 0
    assert "2 problem(s)" in out.stderr
    assert "line 4: component 'a': unknown class 'Nope'" in out.stderr
    assert "line 8: 'gap': 'pv' (the PV name) is required" in out.stderr


def test_list_pvs_shows_the_pv_interface(tmp_path: Path) -> None:
    from assonant_ioc.ioc.main import _parse_args, build_config
    from assonant_ioc.ioc.server import AssonantIOC

    args, ioc_options, _ = _parse_args(
        ["--config", str(REPO / "configs" / "sim.yaml"), "--no-kafka", "--prefix", "X:"]
    )
    ioc = AssonantIOC(config=build_config(args), sender=None, **ioc_options)
    expected = {
        "Snapshot:Pre",
        "Record:During",
        "Snapshot:Post",
        "EndOfExperiment",
        "Abort",
        "ExperimentId",
        "SampleName",
        "DataDir",
        "FileName",
        "State",
        "Status",
        "LastFile",
        "LastError",
        "FilesWritten",
        "PVsConnected",
        "PVsTotal",
        "KafkaConnected",
        "Heartbeat",
    }
    assert {f"X:{name}" for name in expected} <= set(ioc.pvdb)
