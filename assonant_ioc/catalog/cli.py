"""``assonant-ioc catalog``: the data catalog fed by the ``file_written`` events.

usage: assonant-ioc catalog [consume] --kafka-bootstrap HOST:PORT --read DIR [--topic T ...]
       assonant-ioc catalog serve --read DIR [--read DIR ...] [--port 8000]
       assonant-ioc catalog serve --read DIR --access FILE   (people, see docs/access.md)
       assonant-ioc catalog release PROPOSAL --by WHO
       assonant-ioc catalog backfill DIR
       assonant-ioc catalog search --url URL [--sample S] [--beamline B] [--since T] ...

Every subcommand takes --catalog URI: an SQLite file (default: catalog.db in the
state directory, $XDG_STATE_HOME/assonant-ioc) or a PostgreSQL URI
(postgresql://user:password@host/db). serve is tiled's own server over that
catalog: clients give the API key of TILED_SINGLE_USER_API_KEY (or --api-key-file);
with --access FILE, people log in and each sees their proposals' data only (release
makes a proposal's data public). consume registers only the files under its --read
directories (``assonant_ioc.trust``); serve never hands out a raw file (tiled's asset
routes are off).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from assonant_ioc.arguments import Parser, repeated
from assonant_ioc.catalog.record import utc

log = logging.getLogger(__name__)

ACTIONS = ("consume", "serve", "backfill", "search", "release")


def default_uri() -> str:
    """SQLite in the service's state directory (``$XDG_STATE_HOME/assonant-ioc``); here, not
    in the store, so that the command line starts without importing tiled's catalog."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return f"sqlite:///{Path(base) / 'assonant-ioc' / 'catalog.db'}"


def _catalog_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--catalog",
        default=os.environ.get("ASSONANT_CATALOG") or default_uri(),
        help="SQLite file or database URI (default: $ASSONANT_CATALOG, else %(default)s)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="assonant-ioc catalog",
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="action")
    consume = sub.add_parser("consume", help="register the files the events announce (default)")
    consume.add_argument(
        "--kafka-bootstrap",
        default=os.environ.get("KAFKA_BOOTSTRAP", ""),
        help="Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP)",
    )
    consume.add_argument(
        "--topic",
        action="append",
        help="a topic of file_written events; repeat for each beamline (default: assonant.files)",
    )
    consume.add_argument("--group", default="assonant-catalog", help="Kafka consumer group")
    repeated(
        consume,
        "--read",
        "a directory whose files may be registered (the data root, as serve's); repeat "
        "for several; an event naming a file anywhere else is refused",
    )
    consume.add_argument(
        "--stall-after",
        type=float,
        default=900.0,
        help="/health says 503 when one event holds the loop longer than this (seconds)",
    )
    consume.add_argument(
        "--status-port", type=int, default=0, help="serve the counts as JSON on this port (0: off)"
    )
    consume.add_argument("--status-host", default="127.0.0.1", help="address of the status port")
    consume.add_argument(
        "--status-every", type=float, default=30.0, help="log the counts this often (seconds)"
    )
    serve = sub.add_parser("serve", help="tiled's HTTP server over the catalog")
    serve.add_argument(
        "--read",
        action="append",
        required=True,
        help="a directory the files are in (the data root); repeat for several",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--api-key-file", help="a file holding the API key (else $TILED_SINGLE_USER_API_KEY)"
    )
    serve.add_argument(
        "--public", action="store_true", help="reading needs no API key (tiled's --public)"
    )
    repeated(
        serve,
        "--allow-origin",
        "a page's address whose scripts may read the catalog (assonant-ioc page); repeat",
    )
    serve.add_argument(
        "--access",
        help="people log in (PAM, LDAP or OIDC) and see their proposals' data only: the "
        "facility's access file (docs/access.md); without it one API key reads all",
    )
    serve.add_argument(
        "--state", help="where the sessions' key and tiled's configuration live (with --access)"
    )
    serve.add_argument(
        "--people-db", help="tiled's database of people, sessions and API keys (a URI)"
    )
    release = sub.add_parser(
        "release", help="make a proposal's data public (its embargo is over), audited"
    )
    release.add_argument("proposal", help="the proposal id")
    release.add_argument("--by", required=True, help="who releases it (for the audit line)")
    backfill = sub.add_parser("backfill", help="register the files already under DIR")
    backfill.add_argument("dir", help="directory to walk (recursively)")
    search = sub.add_parser("search", help="find files in a served catalog (tiled client)")
    search.add_argument("--url", required=True, help="the catalog server, http://host:port")
    search.add_argument("--beamline")
    search.add_argument("--sample")
    search.add_argument("--experiment-id")
    search.add_argument("--definition", help="NXtomo, NXmx...")
    search.add_argument("--since", help="ended at or after this time (ISO 8601)")
    search.add_argument("--until", help="started at or before this time (ISO 8601)")
    search.add_argument("--text", help="full-text search of the metadata")
    for each in (consume, serve, backfill, release):
        _catalog_arg(each)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in (*ACTIONS, "-h", "--help"):
        argv = ["consume", *argv]
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for chatty in ("alembic", "numexpr", "httpx", "httpcore"):  # their start-up INFO lines
        logging.getLogger(chatty).setLevel(logging.WARNING)
    try:
        if args.action == "consume":
            if not args.kafka_bootstrap:
                raise ValueError("which broker? --kafka-bootstrap HOST:PORT (or $KAFKA_BOOTSTRAP)")
            if not args.read:
                raise ValueError(
                    "which files may be registered? --read DIR (the data root; repeat for more)"
                )
            return asyncio.run(_consume(args))
        if args.action == "serve":
            from assonant_ioc.catalog.serve import serve

            return serve(args)
        if args.action == "release":
            return asyncio.run(_release(args))
        if args.action == "backfill":
            return asyncio.run(_backfill(args))
        return _search(args)
    except (OSError, ValueError) as err:
        sys.stderr.write(f"assonant-ioc catalog {args.action}: {err}\n")
        return 2


async def _consume(args: argparse.Namespace) -> int:
    from assonant_ioc.catalog.consumer import CatalogConsumer, report, serve_status
    from assonant_ioc.catalog.store import Catalog
    from assonant_ioc.events.consuming import Subscription

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    catalog = await Catalog.open(args.catalog)
    log.info("catalog %s: %d records", catalog.shown, await catalog.count())
    from assonant_ioc.trust import roots_of

    consumer = CatalogConsumer(
        Subscription(args.kafka_bootstrap, tuple(args.topic or ["assonant.files"]), args.group),
        catalog,
        roots_of(args.read),
        stall_s=args.stall_after,
    )
    log.info("registering files under %s only", ", ".join(map(str, consumer.roots)))
    status = None
    if args.status_port:
        status = await serve_status(
            consumer.stats, args.status_host, args.status_port, consumer.watch
        )
        log.info("status on http://%s:%d/status", args.status_host, args.status_port)
    reporter = asyncio.create_task(report(consumer, args.status_every, stop))
    try:
        await consumer.run(stop)
    finally:
        stop.set()
        await reporter
        if status is not None:
            status.close()
        await catalog.close()
        log.info("catalog consumer stopped: %s", consumer.stats.line())
    return 0


async def _release(args: argparse.Namespace) -> int:
    from assonant_ioc.catalog.store import Catalog
    from assonant_ioc.trust import proposal_refusal

    refused = proposal_refusal("proposal", args.proposal)
    if refused or not args.proposal:
        raise ValueError(refused or "which proposal?")
    catalog = await Catalog.open(args.catalog)
    try:
        keys = await catalog.release(args.proposal)
    finally:
        await catalog.close()
    log.info(
        "audit: %s released proposal %s: %d record(s) public: %s",
        args.by,
        args.proposal,
        len(keys),
        ", ".join(keys) or "none",
    )
    sys.stdout.write(f"proposal {args.proposal}: {len(keys)} record(s) now public\n")
    return 0


async def _backfill(args: argparse.Namespace) -> int:
    root = Path(args.dir)
    if not root.is_dir():
        raise ValueError(f"{root}: not a directory")
    from assonant_ioc.catalog.backfill import backfill
    from assonant_ioc.catalog.store import Catalog

    catalog = await Catalog.open(args.catalog)
    try:
        counts = await backfill(catalog, root)
    finally:
        await catalog.close()
    summary = " ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "no HDF5 files"
    sys.stdout.write(f"backfill {root}: {summary}\n")
    return 0


def filter_params(conditions: Iterable[tuple[str, str, Any]]) -> list[tuple[str, str]]:
    """tiled's search filters as query parameters, one for each (key, operator, value): the
    operator ``eq``, ``lt``, ``le``, ``gt``, ``ge``, ``contains`` (a list's item), or ``text``
    (full text; the key unused)."""
    params: list[tuple[str, str]] = []
    for key, op, value in conditions:
        if op == "text":
            params.append(("filter[fulltext][condition][text]", value))
            continue
        kind = op if op in ("eq", "contains") else "comparison"
        if kind == "comparison":
            params.append(("filter[comparison][condition][operator]", op))
        params.append((f"filter[{kind}][condition][key]", key))
        params.append((f"filter[{kind}][condition][value]", json.dumps(value)))
    return params


def query_fields(args: argparse.Namespace) -> list[tuple[str, str, Any]]:
    """The search as (key, operator, value) triples: ``eq``, ``ge``, ``le``, ``text``."""
    found: list[tuple[str, str, Any]] = []
    for name in ("beamline", "sample", "experiment_id", "definition"):
        if getattr(args, name, None):
            found.append((name, "eq", getattr(args, name)))
    if args.since:
        found.append(("end_epoch", "ge", utc(_zoned(args.since))[1]))
    if args.until:
        found.append(("start_epoch", "le", utc(_zoned(args.until))[1]))
    if args.text:
        found.append(("", "text", args.text))
    return found


def _zoned(text: str) -> str:
    """A time without a zone is local time, as an operator typing it means."""
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.astimezone()
    return when.astimezone(timezone.utc).isoformat()


def _search(args: argparse.Namespace) -> int:
    """tiled's HTTP search API, as any script would talk to it: one request a page, the API
    key from ``TILED_API_KEY`` (no client library to import, nothing logged per request)."""
    import urllib.error
    import urllib.parse
    import urllib.request

    if not args.url.startswith(("http://", "https://")):
        raise ValueError(f"--url {args.url}: an http:// or https:// address")
    fields = query_fields(args)  # a bad --since/--until is said before connecting
    params = [*filter_params(fields), ("fields", "metadata"), ("page[limit]", "100")]
    key = os.environ.get("TILED_API_KEY", "")
    headers = {"Authorization": f"Apikey {key}"} if key else {}
    url: str | None = f"{args.url.rstrip('/')}/api/v1/search/?{urllib.parse.urlencode(params)}"
    n = 0
    while url:
        request = urllib.request.Request(url, headers=headers)  # noqa: S310 - http(s) checked
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:  # noqa: S310
                page = json.loads(reply.read())
        except urllib.error.HTTPError as err:
            if err.code in (401, 403):
                raise ValueError(
                    f"the catalog at {args.url} wants an API key: set TILED_API_KEY"
                    + (" (this one was refused)" if key else "")
                ) from None
            raise ValueError(
                f"the catalog at {args.url} answered {err.code} {err.reason}"
            ) from None
        except OSError as err:
            raise ValueError(f"cannot reach the catalog at {args.url}: {err}") from err
        for item in page.get("data", []):
            meta = item.get("attributes", {}).get("metadata", {})
            sys.stdout.write(
                json.dumps(
                    {k: meta.get(k) for k in ("beamline", "experiment_id", "sample", "definition")}
                    | {"key": item["id"], "start_time": meta.get("start_time")}
                    | {"status": meta.get("status"), "file_path": meta.get("file_path")}
                )
                + "\n"
            )
            n += 1
        url = (page.get("links") or {}).get("next")
    sys.stderr.write(f"{n} file(s)\n")
    return 0
