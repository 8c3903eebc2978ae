"""Forged ``file_written`` events, as an attacker on the same network sends them with nothing
but the topic: a file outside the data root, ``/etc/passwd``, a ``..`` path, a link out of
the root, ``/dev/zero``, a FIFO, a wrong sha256. The catalog consumer and the processor
(each given ``--read`` the data root) refuse each, named in the log and counted on
``/metrics`` by reason; nothing of them reaches the catalog; the good event after them is
registered (and derived) as usual; tiled hands out no raw file."""

from __future__ import annotations

import copy
import hashlib
import os
import secrets
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from assonant_ioc.catalog.record import record_key
from assonant_ioc.sim import catalog_procs, procs
from tests.system.monitoring import health, scrape
from tests.system.reduction import all_announced, catalog_get, xas_file
from tests.system.test_processing_group import _publish

pytestmark = pytest.mark.timeout(600)

#: what each forged event names, and the reason it must be refused with
CASES = {
    "outside": "outside_roots",
    "passwd": "outside_roots",
    "dotdot": "traversal",
    "link_out": "outside_roots",
    "dev_zero": "outside_roots",
    "link_zero": "outside_roots",
    "fifo": "not_regular",
    "wrong_sha": "checksum",
}


def _forged(tmp: Path, good: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each hostile event: the good event with another path (and, where the target is a
    readable file, its true size and sha256, so no checksum saves the service)."""
    data = Path(good["file_path"]).parent
    outside = tmp / "outside"
    outside.mkdir(exist_ok=True)
    secret = outside / "secret.nxs"
    secret.write_bytes(Path(good["file_path"]).read_bytes())  # a valid file, not in the root
    (data / "link_out.nxs").symlink_to("/etc/passwd")
    (data / "link_zero.nxs").symlink_to("/dev/zero")
    os.mkfifo(data / "fifo.nxs")
    paths = {
        "outside": str(secret),
        "passwd": "/etc/passwd",
        "dotdot": f"{data}/../outside/secret.nxs",
        "link_out": str(data / "link_out.nxs"),
        "dev_zero": "/dev/zero",
        "link_zero": str(data / "link_zero.nxs"),
        "fifo": str(data / "fifo.nxs"),
        "wrong_sha": good["file_path"],
    }
    out = {}
    for name, path in paths.items():
        event = copy.deepcopy(good)
        event["event_id"] = uuid.uuid4().hex
        event["experiment_id"] = f"forged-{name}"
        event["file_path"] = path
        target = Path(path)
        if name != "wrong_sha" and target.is_file():
            raw = target.read_bytes()
            event["file_size"], event["sha256"] = len(raw), hashlib.sha256(raw).hexdigest()
        if name == "wrong_sha":
            event["sha256"] = "0" * 64
        out[name] = event
    return out


def _refused(port: int, service: str) -> dict[str, float]:
    name = f"assonant_{service}_refused_total"
    return {dict(labels)["reason"]: v for (n, labels), v in scrape(port).items() if n == name}


def _huge_head(port: int) -> bytes:
    """What /metrics answers a request whose header is 1 MB."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n")
        return sock.recv(200)


def test_catalog_serve_says_what_a_key_must_be_before_tiled_would_die_of_it(
    tmp_path: Path,
) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "assonant_ioc.cli", "catalog", "serve", "--read", str(tmp_path)],
        env=os.environ | {"TILED_SINGLE_USER_API_KEY": "not-letters-and-digits!"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "the API key must be ASCII letters and digits only" in done.stderr


def _expected() -> dict[str, int]:
    counts: dict[str, int] = {}
    for reason in CASES.values():
        counts[reason] = counts.get(reason, 0) + 1
    return counts


@dataclass
class Sent:
    """The data root, the good file's event, the forged events, sent in that order (the good
    one last) to ``topic``; ``db`` the catalog the service under test writes."""

    data: Path
    good: dict[str, Any]
    forged: dict[str, dict[str, Any]]
    topic: str
    db: str

    def none_registered(self) -> None:
        """Nothing of the forged paths is in the catalog."""
        for event in self.forged.values():
            if event["file_path"] != self.good["file_path"]:
                assert catalog_get(self.db, event["file_path"]) is None, event["file_path"]


@pytest.fixture
def sent(tmp_path: Path, kafka: str) -> Sent:
    data = tmp_path / "data"
    good = xas_file(data / "SIM_xas_good.nxs", seed=3)
    forged = _forged(tmp_path, good)
    topic = f"hostile.{secrets.token_hex(4)}"
    _publish(kafka, topic, [*forged.values(), good])
    return Sent(data, good, forged, topic, f"sqlite:///{tmp_path / 'catalog.db'}")


def test_forged_events_are_refused_by_the_catalog_and_the_next_good_one_registered(
    kafka: str, log_dir: Path, sent: Sent
) -> None:
    data, good, forged, topic, db = sent.data, sent.good, sent.forged, sent.topic, sent.db
    with catalog_procs.catalog_consumer(log_dir, kafka, topic, db, [data]) as (proc, port):
        # keyed by their experiment ids, the events may be on different partitions: the
        # good one can be registered before the last forged one is refused
        procs.wait_until(
            lambda: (
                (s := catalog_procs.consumer_status(port))["registered"] >= 1
                and s["refused"] >= len(CASES)
            ),
            60,
            "the good one registered and every forged one refused",
            proc,
        )
        status = catalog_procs.consumer_status(port)
        assert status["registered"] == 1 and status["refused"] == len(CASES), status
        assert _refused(port, "catalog") == _expected()
        assert health(port) == (200, "ok")  # nothing hangs: /dev/zero and the FIFO were not read
        assert _huge_head(port).startswith(b"HTTP/1.1 431 ")  # a 1 MB header: refused, said
        assert health(port) == (200, "ok")
        log = proc.tail(200)
        assert "Traceback" not in log
        for name in forged:
            assert f"refused ({CASES[name]})" in log, name
        assert "the file's size or sha256 is not the event's" in log
        # the consumer says the sha256 differs, never what the file's is (no oracle)
        real = hashlib.sha256(Path(good["file_path"]).read_bytes()).hexdigest()
        assert "'/etc/passwd' is outside the data roots" in log and real not in log
        # a forged sha256 for a registered file changes nothing of its record
        _publish(kafka, topic, [forged["wrong_sha"]])
        procs.wait_until(
            lambda: catalog_procs.consumer_status(port)["refused"] == len(CASES) + 1, 60, "again"
        )
    record = catalog_get(db, good["file_path"]) or {}
    assert record["event_id"] == good["event_id"] and record["status"] == "ok"
    assert record["sha256"] == real
    sent.none_registered()
    # tiled hands out no raw file: the asset route of the registered file answers no bytes
    key = secrets.token_hex(16)
    with catalog_procs.catalog_server(log_dir, db, [data], key) as url:
        asset = f"{url}/api/v1/asset/bytes/{record_key(Path(good['file_path']))}?id=1"
        request = urllib.request.Request(asset, headers={"Authorization": f"Apikey {key}"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        with refused.value:  # the error holds the answer open: read it, then closed
            body = refused.value.read()
        assert refused.value.code == 403 and b"\x89HDF" not in body, body[:200]


def test_forged_events_are_refused_by_the_processor_and_the_next_good_one_derived(
    kafka: str, log_dir: Path, tmp_path: Path, sent: Sent
) -> None:
    good, forged, topic, db = sent.good, sent.forged, sent.topic, sent.db
    derived = f"hostile.derived.{secrets.token_hex(4)}"
    root = tmp_path / "processed"
    port = procs.free_port()
    group, extra = f"g-{secrets.token_hex(3)}", ["--status-port", str(port)]
    with catalog_procs.processor(
        log_dir, kafka, topic, db, root, derived, group, extra=extra, read=[sent.data]
    ) as proc:
        procs.wait_until(
            lambda: all_announced(db, [good["file_path"]], "larch"), 180, "the good one", proc
        )
        procs.wait_until(lambda: sum(_refused(port, "process").values()) == len(CASES), 30, "")
        assert _refused(port, "process") == _expected()
        assert health(port) == (200, "ok")
        before = catalog_get(db, good["file_path"]) or {}
        # a forged sha256 for the processed file: nothing run, its record's results unchanged
        _publish(kafka, topic, [forged["wrong_sha"]])
        procs.wait_until(
            lambda: _refused(port, "process").get("checksum") == 2, 60, "the second refusal", proc
        )
        log = proc.tail(300)
    assert (catalog_get(db, good["file_path"]) or {}).get("results") == before["results"]
    assert before["event_id"] == good["event_id"]
    # one derived file, of the good file only; nothing of the forged paths in the catalog
    made = [p.name for p in root.rglob("*.nxs")]
    assert made == [f"SIM_xas_good_larch_{good['sha256'][:8]}.nxs"], made
    sent.none_registered()
    for name in forged:
        assert f"refused ({CASES[name]})" in log, name
