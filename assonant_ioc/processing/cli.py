"""``assonant-ioc process``: reduce every file the events announce (nabu, pyFAI, xraylarch).

    assonant-ioc process --kafka-bootstrap HOST:PORT --read DIR --processed-root DIR [--topic T ...]
        [--catalog URI] [--derived-topic T] [--group G] [--jobs N] [--time-limit S]
        [--dask SCHEDULER] [--start-z Z --end-z Z] [--status-port P]

More processors in the same ``--group`` share the topics' partitions; ``--dask`` hands each
job's heavy step to a Dask distributed cluster (its scheduler's address). Only files under
the ``--read`` directories whose sha256 is the event's are processed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from assonant_ioc.arguments import Parser, repeated

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    from assonant_ioc.catalog.cli import default_uri

    parser = Parser(
        prog="assonant-ioc process",
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--kafka-bootstrap",
        default=os.environ.get("KAFKA_BOOTSTRAP", ""),
        help="Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP)",
    )
    parser.add_argument(
        "--topic", action="append", help="a topic of file_written events (default: assonant.files)"
    )
    parser.add_argument(
        "--derived-topic", default="assonant.derived", help="where file_derived events go"
    )
    parser.add_argument("--group", default="assonant-process", help="Kafka consumer group")
    parser.add_argument(
        "--catalog",
        default=os.environ.get("ASSONANT_CATALOG") or default_uri(),
        help="the catalog (SQLite file or database URI; default: $ASSONANT_CATALOG)",
    )
    parser.add_argument(
        "--processed-root", required=True, type=Path, help="where the derived files go"
    )
    repeated(
        parser,
        "--read",
        "a directory whose files may be processed (the data root); repeat for several; "
        "an event naming a file anywhere else is refused",
    )
    parser.add_argument("--jobs", type=int, default=1, help="jobs at once (default 1)")
    parser.add_argument(
        "--time-limit", type=float, default=3600.0, help="seconds a job may take (default 3600)"
    )
    parser.add_argument("--dask", default="", help="a Dask scheduler's address (tcp://...)")
    parser.add_argument("--start-z", type=int, help="nabu: the first slice to reconstruct")
    parser.add_argument("--end-z", type=int, help="nabu: the last slice (-1: to the end)")
    parser.add_argument(
        "--kafka-idempotent",
        choices=["on", "off"],
        default="on",
        help="an idempotent producer (off for a broker that grants no producer id)",
    )
    parser.add_argument("--status-port", type=int, default=0, help="JSON status, /metrics")
    parser.add_argument("--status-host", default="127.0.0.1")
    return parser


async def _run(args: argparse.Namespace) -> int:
    from assonant_ioc.catalog.store import Catalog
    from assonant_ioc.events.consuming import Subscription
    from assonant_ioc.events.kafka import EventSender
    from assonant_ioc.processing.consumer import Processor, Settings
    from assonant_ioc.processing.runner import DaskRunner, run_local
    from assonant_ioc.processing.status import serve_status

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    nabu: dict[str, Any] = {}
    if args.start_z is not None:
        nabu["start_z"] = args.start_z
    if args.end_z is not None:
        nabu["end_z"] = args.end_z
    from assonant_ioc.trust import roots_of

    settings = Settings(
        processed_root=args.processed_root.resolve(),
        roots=roots_of(args.read),
        time_limit=args.time_limit,
        jobs=args.jobs,
        parameters={"nabu": nabu},
    )
    catalog = await Catalog.open(args.catalog)
    sender = EventSender(
        args.kafka_bootstrap, args.derived_topic, idempotent=args.kafka_idempotent == "on"
    )
    dask = DaskRunner(args.dask) if args.dask else None
    processor = Processor(
        Subscription(args.kafka_bootstrap, tuple(args.topic or ["assonant.files"]), args.group),
        catalog,
        sender,
        settings,
        runner=dask or run_local,
    )
    status = None
    if args.status_port:
        status = await serve_status(
            processor.stats, args.status_host, args.status_port, processor.watch
        )
    log.info(
        "processing files under %s into %s (%d job(s) at once, %s)",
        ", ".join(map(str, settings.roots)),
        settings.processed_root,
        settings.jobs,
        f"on Dask {args.dask}" if dask else "in child processes",
    )
    try:
        await processor.run(stop)
    finally:
        if status is not None:
            status.close()
        if dask is not None:
            await dask.close()
        await sender.close()
        await catalog.close()
        log.info("processor stopped: %s", processor.stats)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for chatty in ("alembic", "numexpr", "httpx", "httpcore", "distributed"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    if not args.kafka_bootstrap:
        sys.stderr.write("assonant-ioc process: which broker? --kafka-bootstrap HOST:PORT\n")
        return 2
    if not args.read:
        sys.stderr.write(
            "assonant-ioc process: which files may be processed? --read DIR (the data root)\n"
        )
        return 2
    return asyncio.run(_run(args))
