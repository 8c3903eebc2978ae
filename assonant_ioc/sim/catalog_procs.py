"""The data catalog's processes for a demo, a test or the bench: the consumer, tiled's
server and a PostgreSQL server of its own, each on a free loopback port, stopped by PID."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from assonant_ioc.sim.procs import Proc, free_port, running, tcp_answers, wait_until


def http_answers(url: str) -> bool:
    """Whether an HTTP server answers ``url`` (any status: it is up)."""
    try:
        with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - http:// built here
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


@contextlib.contextmanager
def catalog_consumer(
    log_dir: Path,
    kafka: str,
    topic: str | list[str],
    catalog: str,
    read: list[Path],
    status_port: int | None = None,
    extra: list[str] | None = None,
) -> Iterator[tuple[Proc, int]]:
    """``assonant-ioc catalog consume`` of ``topic`` (or of each of a list), registering
    files under ``read`` only; yields (proc, status port) once its status answers."""
    status_port = status_port or free_port()
    args = [
        sys.executable,
        "-m",
        "assonant_ioc.cli",
        "catalog",
        "consume",
        "--kafka-bootstrap",
        kafka,
        *[a for t in ([topic] if isinstance(topic, str) else topic) for a in ("--topic", t)],
        "--catalog",
        catalog,
        "--status-port",
        str(status_port),
        "--status-every",
        "5",
        *[a for d in read for a in ("--read", str(d))],
        *(extra or []),
    ]
    with running("catalog-consumer", args, {}, log_dir) as proc:
        url = f"http://127.0.0.1:{status_port}/status"
        wait_until(lambda: http_answers(url), 60, "catalog consumer", proc)
        yield proc, status_port


@contextlib.contextmanager
def catalog_server(
    log_dir: Path,
    catalog: str,
    read: list[Path],
    api_key: str,
    allow_origin: str = "",
    port: int = 0,
    access: Path | None = None,
) -> Iterator[str]:
    """``assonant-ioc catalog serve`` (tiled) on a free port; yields its URL.
    ``allow_origin``: the page's address, whose scripts may read it; ``access``: the
    facility's access file (people log in; ``api_key`` is then not used)."""
    port = port or free_port()
    args = [
        sys.executable,
        "-m",
        "assonant_ioc.cli",
        "catalog",
        "serve",
        "--catalog",
        catalog,
        "--port",
        str(port),
        *[a for d in read for a in ("--read", str(d))],
        *(["--allow-origin", allow_origin] if allow_origin else []),
        *(["--access", str(access)] if access else []),
    ]
    env = {} if access else {"TILED_SINGLE_USER_API_KEY": api_key}
    with running("catalog-server", args, env, log_dir) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_answers(f"{url}/api/v1/"), 60, "tiled server", proc)
        yield url


def postgres_bin() -> Path | None:
    """The directory of a PostgreSQL server's programs (Debian's layout, or on PATH)."""
    import glob
    import shutil

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("postgres")
    return Path(on_path).resolve().parent if on_path else None


@contextlib.contextmanager
def postgres(log_dir: Path) -> Iterator[str]:
    """A PostgreSQL server of its own on 127.0.0.1 (a new cluster in a temporary directory,
    as the ``postgres`` user when run as root); yields the URI of an empty database."""
    import pwd
    import shutil
    import tempfile

    bindir = postgres_bin()
    if bindir is None:
        raise RuntimeError("no PostgreSQL server (Debian: apt-get install postgresql)")
    user = "postgres" if os.geteuid() == 0 else None
    top = Path(tempfile.mkdtemp(prefix="assonant-pg-"))
    try:
        if user is not None:
            os.chown(top, pwd.getpwnam(user).pw_uid, -1)
        data = top / "data"
        init = [str(bindir / "initdb"), "-D", str(data), "-U", "assonant", "--auth=trust"]
        with running("initdb", [*init, "-E", "UTF8"], {}, log_dir, user) as proc:
            if proc.popen.wait(120) != 0:
                raise RuntimeError(f"initdb failed:\n{proc.tail()}")
        port = free_port()
        args = [str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(top)]
        args += ["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]
        with running("postgres", args, {}, log_dir, user) as proc:
            wait_until(lambda: tcp_answers(port), 30, "PostgreSQL", proc)
            create = [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port)]
            wait_until(
                lambda: (
                    subprocess.run(
                        [*create, "-U", "assonant", "catalog"], capture_output=True, check=False
                    ).returncode
                    == 0
                ),
                30,
                "the catalog database",
                proc,
            )
            yield f"postgresql://assonant@127.0.0.1:{port}/catalog"
    finally:
        shutil.rmtree(top, ignore_errors=True)


def consumer_status(port: int) -> dict[str, Any]:
    """The catalog consumer's counts (its ``--status-port``)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as reply:
        found: dict[str, Any] = json.loads(reply.read())
        return found


def search_request(url: str, api_key: str, key: str, value: Any) -> urllib.request.Request:
    """tiled's HTTP search for records whose metadata ``key`` equals ``value``."""
    query = urllib.parse.urlencode(
        [
            ("filter[eq][condition][key]", key),
            ("filter[eq][condition][value]", json.dumps(value)),
            ("fields", "metadata"),
        ]
    )
    return urllib.request.Request(  # noqa: S310 - http:// built here
        f"{url}/api/v1/search/?{query}", headers={"Authorization": f"Apikey {api_key}"}
    )


def search(request: urllib.request.Request) -> list[dict[str, Any]]:
    """The records a search request finds (tiled's JSON:API items)."""
    with urllib.request.urlopen(request, timeout=5) as reply:  # noqa: S310
        hits: list[dict[str, Any]] = json.loads(reply.read())["data"]
        return hits


def search_command(
    url: str, api_key: str | None, *filters: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """``assonant-ioc catalog search --url URL FILTERS`` as a person runs it (the key from
    ``TILED_API_KEY``; none in its environment when ``api_key`` is None): its output."""
    env = {k: v for k, v in os.environ.items() if k != "TILED_API_KEY"}
    if api_key is not None:
        env["TILED_API_KEY"] = api_key
    command = [sys.executable, "-m", "assonant_ioc.cli", "catalog", "search", "--url", url]
    return subprocess.run(
        [*command, *filters], capture_output=True, text=True, env=env, check=check, timeout=60
    )


@contextlib.contextmanager
def processor(
    log_dir: Path,
    kafka: str,
    topic: str,
    catalog: str,
    processed_root: Path,
    derived_topic: str,
    group: str = "assonant-process",
    extra: list[str] | None = None,
    name: str = "processor",
    *,
    read: list[Path],
) -> Iterator[Proc]:
    """``assonant-ioc process`` on ``topic`` of the files under ``read`` (its producer not
    idempotent: the local broker grants no producer id); yields its process."""
    args = [
        sys.executable,
        "-m",
        "assonant_ioc.cli",
        "process",
        "--kafka-bootstrap",
        kafka,
        "--topic",
        topic,
        "--derived-topic",
        derived_topic,
        "--group",
        group,
        "--catalog",
        catalog,
        "--processed-root",
        str(processed_root),
        "--kafka-idempotent",
        "off",
        *[a for d in read for a in ("--read", str(d))],
        *(extra or []),
    ]
    with running(name, args, {}, log_dir) as proc:
        yield proc


@contextlib.contextmanager
def page_server(log_dir: Path, catalog_url: str, port: int = 0) -> Iterator[str]:
    """``assonant-ioc page`` on a free port; yields its URL."""
    port = port or free_port()
    args = [
        sys.executable,
        "-m",
        "assonant_ioc.cli",
        "page",
        "--catalog-url",
        catalog_url,
        "--port",
        str(port),
    ]
    with running("page", args, {}, log_dir) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_answers(f"{url}/config.json"), 30, "page server", proc)
        yield url
