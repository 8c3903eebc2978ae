"""The demo: a local broker, the simulated beamline and the service, then one experiment.

Drives the experiment with CA puts as a control system would (put with
callback), then prints the NeXus tree of the file and the Kafka event received.
Every process binds 127.0.0.1 on a free port and is stopped on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from assonant_ioc.arguments import Parser
from assonant_ioc.config.loader import resolve_config
from assonant_ioc.events.kafka import consume_event
from assonant_ioc.nexus.inspect import tree_lines
from assonant_ioc.sim import catalog_procs, procs, scans


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _put(pv: str, value: Any) -> None:
    procs.ca_put(pv, value)
    _out(f"  caput -c {pv} {value!r}")


def _acquire(bl: str, key: int, seconds: float) -> None:
    """Frames of one kind (2 dark, 1 flat) for ``seconds``, then the camera closes its file."""
    procs.ca_put(f"{bl}det:ImageKey", key)
    procs.ca_put(f"{bl}det:Acquire", 1)
    time.sleep(seconds)  # the camera takes frames at 10 Hz meanwhile
    _acquire_stop(bl)


def _acquire_stop(bl: str) -> None:
    procs.ca_put(f"{bl}det:Acquire", 0)
    procs.wait_until(
        lambda: procs.ca_get(f"{bl}det:HDF1:Capture_RBV") == 0, 10, "the camera's file"
    )


def _tomography(prefix: str, bl: str, camera: bool, data_dir: Path, exp_id: str) -> Path:
    """Darks and flats (with the caproto camera), then projections over a half turn
    (180 degrees); returns the file written."""
    if camera:
        # a directory per run: the camera numbers its files from 1 again each
        # time the simulated beamline starts, and must not overwrite a file
        # an earlier run's master file links
        _put(f"{bl}det:HDF1:FilePath", str(data_dir / "detector" / exp_id))
    _put(f"{prefix}Snapshot:Pre", 1)
    for key, what in ((2, "dark"), (1, "flat")) if camera else ():
        _out(f"  ({what} frames)")
        _acquire(bl, key, 0.4)
    _put(f"{prefix}Record:During", 1)
    _put(f"{bl}det:ImageKey", 0)
    _put(f"{bl}smp:rx:VAL", 180.0)  # a half turn: what a reconstruction needs
    _put(f"{bl}det:Acquire", 1)
    procs.wait_until(lambda: procs.ca_get(f"{bl}smp:rx:DMOV") == 1, 20, "rotation", None)
    if camera:
        _acquire_stop(bl)
    else:
        _put(f"{bl}det:Acquire", 0)
    _put(f"{prefix}Record:During", 0)
    _put(f"{prefix}Snapshot:Post", 1)
    _put(f"{prefix}EndOfExperiment", 1)
    return Path(procs.ca_get(f"{prefix}LastFile"))


def _pvput(ctx: Any, pv: str, value: Any) -> None:
    ctx.put(pv, value)
    _out(f"  pvput {pv} {value!r}")


def _tomography_pva(prefix: str, pva: str, udp: int) -> Path:
    """The same half turn with the camera and the rotation over PVAccess: darks, flats and
    projections all recorded from the NTNDArray frames while recording (the rotation's
    angle with each frame); returns the file written."""
    from p4p.client.thread import Context

    from assonant_ioc.sim.pva_env import pva_client_env

    with Context("pva", conf=pva_client_env(udp), useenv=False, nt=False) as ctx:
        _put(f"{prefix}Snapshot:Pre", 1)
        _put(f"{prefix}Record:During", 1)
        for key, n, end, what in ((2, 5, 0.0, "dark"), (1, 5, 0.0, "flat"), (0, 91, 180.0, "")):
            _out(f"  ({what or 'projection'} frames, over PVA)")
            settings = {"ImageKey": key, "NumImages": n, "StartAngle": 0.0, "EndAngle": end}
            for name, value in {**settings, "AcquireTime": 0.05, "Acquire": 1}.items():
                _pvput(ctx, f"{pva}cam:{name}", value)
            procs.wait_until(
                lambda: ctx.get(f"{pva}cam:Acquire")["value"] == 0, 60, "the camera", None
            )
        _put(f"{prefix}Record:During", 0)
        _put(f"{prefix}Snapshot:Post", 1)
        _put(f"{prefix}EndOfExperiment", 1)
    return Path(procs.ca_get(f"{prefix}LastFile"))


def main(argv: list[str] | None = None) -> None:
    parser = Parser(description=__doc__)
    parser.add_argument("--data-dir", default="demo-output", help="where the file goes")
    parser.add_argument(
        "--kind",
        choices=["caproto", "c"],
        default="caproto",
        help="simulated beamline: caproto IOC or C IOC from db/",
    )
    parser.add_argument(
        "--catalog",
        action="store_true",
        help="also run the data catalog (consumer and tiled server) and search it for the file",
    )
    parser.add_argument(
        "--technique",
        choices=["tomo", *scans.TECHNIQUES],
        default="tomo",
        help="the experiment: tomography (NXtomo), SAXS (NXsas), XRF (NXfluo) or XAS (NXxas); "
        "all but tomo need the caproto beamline",
    )
    parser.add_argument(
        "--process",
        action="store_true",
        help="also reduce the file (assonant-ioc process: nabu, pyFAI or xraylarch) and serve "
        "the scientists' page over the catalog (implies --catalog)",
    )
    parser.add_argument(
        "--pva",
        action="store_true",
        help="the tomography with the camera's frames and the rotation over PVAccess "
        "(NDPluginPva's NTNDArray; the rest of the beamline over Channel Access)",
    )
    args = parser.parse_args(argv)
    args.catalog = args.catalog or args.process
    if args.pva and (args.technique != "tomo" or args.kind != "caproto"):
        parser.error("--pva records a tomography (--technique tomo) beside the caproto beamline")
    if args.technique != "tomo" and args.kind != "caproto":
        parser.error(f"--technique {args.technique} needs --kind caproto (its devices)")
    data_dir = Path(args.data_dir).resolve()
    logs = data_dir / "logs" / time.strftime("%Y%m%dT%H%M%S")  # beside the file, not in /tmp
    logs.mkdir(parents=True, exist_ok=True)
    # NXtomo over the caproto camera's dark, flat and projection files; the C IOC's camera
    # writes no files, so with it the plain config
    camera = args.kind == "caproto"
    technique = scans.TECHNIQUES.get(args.technique)
    config = resolve_config(technique[0] if technique else "sim_tomo" if camera else "sim")
    config = resolve_config("sim_tomo_pva") if args.pva else config
    bl, prefix = procs.new_prefix("SIM"), procs.new_prefix("DEMO")
    pva = procs.new_prefix("PVA")
    _out(f"logs in {logs}")
    with procs.broker(logs) as kafka, contextlib.ExitStack() as catalog:
        more_env: dict[str, str] = {}
        pva_udp = 0
        if args.pva:
            from assonant_ioc.sim.pva_env import pva_client_env

            pva_udp = catalog.enter_context(procs.sim_pva(logs, pva))[1]
            more_env = pva_client_env(pva_udp)
            _out(f"simulated PVA camera and rotation, prefix {pva}, PVA search port {pva_udp}")
        _out(f"Kafka-protocol broker on {kafka}")
        page_url = f"http://127.0.0.1:{procs.free_port()}" if args.process else ""
        if args.catalog:
            search = _start_catalog(catalog, logs, kafka, data_dir, page_url)
        with procs.sim_beamline(logs, bl, kind=args.kind) as bl_port:
            _out(f"simulated beamline ({args.kind}) prefix {bl} on 127.0.0.1:{bl_port}")
            extra = ["--macro", f"BL={bl}", "--data-dir", str(data_dir), "--kafka-bootstrap", kafka]
            extra += ["--macro", f"PVA={pva}"] if args.pva else []
            with procs.service(logs, config, prefix, bl_port, extra, more_env) as (port, _proc):
                _out(f"assonant-ioc prefix {prefix} on 127.0.0.1:{port}")
                os.environ.update(procs.ca_client_env(port, bl_port))
                procs.wait_until(
                    lambda: (
                        procs.ca_get(f"{prefix}PVsConnected") == procs.ca_get(f"{prefix}PVsTotal")
                    ),
                    20,
                    "PV connections",
                )
                exp_id = time.strftime("demo-%Y%m%dT%H%M%S")
                _out("\nthe experiment:")
                _put(f"{prefix}ExperimentId", exp_id)
                _put(f"{prefix}SampleName", "demo sample")
                if technique is not None:
                    folder = data_dir / "detector" / exp_id
                    extra_args = {"folder": folder} if args.technique == "saxs" else {}
                    last = technique[1](prefix, bl, _put, procs.ca_get, **extra_args)
                elif args.pva:
                    last = _tomography_pva(prefix, pva, pva_udp)
                else:
                    last = _tomography(prefix, bl, camera, data_dir, exp_id)
                _out(f"\nState={procs.ca_get(f'{prefix}State')} LastFile={last}")
                _out(f"Status={procs.ca_get(f'{prefix}Status')}\n")
                _out("\n".join(tree_lines(str(last))))
                event = asyncio.run(consume_event(kafka, "assonant.files", exp_id))
                _out("\nthe Kafka event (topic assonant.files):")
                _out(json.dumps(event, indent=2))
                if args.catalog:
                    search(event)
                _out(_in_plain_words(event, args.process))
                if args.process:
                    _process(catalog, logs, kafka, data_dir, event, page_url)


def _start_catalog(
    stack: contextlib.ExitStack, logs: Path, kafka: str, data_dir: Path, page_url: str = ""
) -> Any:
    """The catalog consumer and tiled's server over ``data_dir/catalog.db`` (its scripts
    readable from ``page_url``); returns the function that waits for an event's file in the
    catalog and shows how it was found."""
    db = f"sqlite:///{data_dir / 'catalog.db'}"
    key = secrets.token_hex(16)
    stack.enter_context(
        catalog_procs.catalog_consumer(logs, kafka, "assonant.files", db, [data_dir])
    )
    url = stack.enter_context(
        catalog_procs.catalog_server(logs, db, [data_dir], key, allow_origin=page_url)
    )
    _KEYS["url"], _KEYS["key"], _KEYS["db"] = url, key, db
    _out(f"data catalog: consumer of assonant.files into {db}; tiled on {url}")

    def search(event: dict[str, Any]) -> None:
        request = catalog_procs.search_request(url, key, "sample", event["sample_name"])

        def found() -> list[dict[str, Any]]:
            hits = catalog_procs.search(request)
            return [h for h in hits if h["attributes"]["metadata"]["event_id"] == event["event_id"]]

        procs.wait_until(lambda: bool(found()), 30, "the file in the catalog")
        (hit,) = found()
        meta = hit["attributes"]["metadata"]
        _out(
            "\nthe data catalog finds it by its sample (tiled's HTTP API; it stops with the demo):"
        )
        _out(f"  curl -H 'Authorization: Apikey {key}' {shlex.quote(request.full_url)}")
        _out(f"  -> {hit['id']}: {meta['beamline']} {meta['experiment_id']} {meta['definition']}")
        _out(f"     {meta['file_path']} ({meta['status']}, sha256 {meta['sha256'][:12]}...)")
        sample = shlex.quote(event["sample_name"])
        _out("  the same with the command line (TILED_API_KEY holds the key):")
        _out(f"  assonant-ioc catalog search --url {url} --sample {sample}")
        frame = f"{url}/api/v1/array/full/{hit['id']}/during_exposure/data/data?slice=0"
        _out(
            f"  a frame, through the file's links: curl -H 'Authorization: Apikey {key}' '{frame}'"
        )

    return search


#: the catalog's address, API key and database, for the processing and the page
_KEYS: dict[str, str] = {}


def _process(
    stack: contextlib.ExitStack,
    logs: Path,
    kafka: str,
    data_dir: Path,
    event: dict[str, Any],
    page_url: str,
) -> None:
    """The processor on the files' topic: the derived file and its event; then the page."""
    from assonant_ioc.processing.jobs import job_for

    root = data_dir / "processed"
    job = job_for(event, root)
    stack.enter_context(
        catalog_procs.processor(
            logs, kafka, "assonant.files", _KEYS["db"], root, "assonant.derived", read=[data_dir]
        )
    )
    _out(f"\nassonant-ioc process: reducing into {root} (file_derived on assonant.derived)")
    if job is None:
        _out(f"  ({event.get('definition') or 'no definition'}: no pipeline for this file)")
    else:
        derived = asyncio.run(_derived_or_failed(kafka, job, Path(event["file_path"])))
        program = f"{derived['program']} {derived['version']}"
        _out(f"  {job.pipeline} ({program}, {derived['seconds']:.1f} s)")
        _out(f"  -> {derived['file_path']}")
        _out(f"  results: {json.dumps(derived['results'])}")
    port = int(page_url.rsplit(":", 1)[1])
    stack.enter_context(catalog_procs.page_server(logs, _KEYS["url"], port))
    _out(f"\nthe page: {page_url}/  (API key {_KEYS['key']}; it stops with the demo)")
    _wait_for_stop()
    _out("stopping the demo (the page, the processor, the catalog, the IOC, the broker)...")


def _in_plain_words(event: dict[str, Any], process: bool) -> str:
    """What the reader just saw, said at the end of the dump (its last words would be the
    validators' counts, which read as a failure when they are the definitions' own gaps)."""
    check = event.get("validation") or {}
    errors = [str(e) for e in check.get("first_errors", [])]
    known = [e for e in errors if "NXslit" in e or "NXinstrument" in e]
    lines = [
        "",
        "in plain words:",
        f"  the experiment is in {event['file_path']}: its tree is above, each captured value",
        "  with the PV it came from (pre_exposure, during_exposure, post_exposure);",
        f"  the Kafka event above announced it ({event['readings_captured']} readings, "
        f"sha256 {str(event['sha256'])[:12]}...).",
    ]
    if not check:
        lines.append("  the file was not validated (--no-validate).")
    elif not check.get("errors"):
        lines.append(
            f"  the NeXus validators ({', '.join(check.get('validators', []))}) found it valid."
        )
    elif len(known) == len(errors) == int(check["errors"]):
        lines.append(
            f"  the validators' {check['errors']} error(s) are the NeXus definitions' own gap "
            "(NXslit is not listed in NXinstrument), not a fault of the file: docs/file.md."
        )
    else:
        lines.append(f"  the validators found {check['errors']} error(s): see 'validation' above.")
    if any("MissingDocumentation" in v for v in check.get("verdicts", [])):
        lines.append(
            "  pynxtools' 'NOT valid' names fields its definition does not document (extra"
            " fields, kept on purpose); every program tried takes the file (docs/benchmarks.md)."
        )
    if not process:
        lines.append("  next: `bash scripts/demo.sh --process` reduces it and shows it on a page.")
    return "\n".join(lines)


def _wait_for_stop() -> None:
    """Until Enter (at a terminal), Ctrl-C or SIGTERM: the page stays up while its reader
    looks, whether the demo's output goes to a terminal, a pipe or a file."""
    import signal
    import threading

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    if sys.stdin.isatty():
        _out("press Enter (or Ctrl-C) to stop the demo")

        def enter() -> None:
            sys.stdin.readline()
            stop.set()

        threading.Thread(target=enter, daemon=True).start()
    else:
        _out("Ctrl-C (or SIGTERM) stops the demo")
    stop.wait()


class DemoFailed(SystemExit):
    """The demo cannot go on: its message, without a traceback, and exit status 1."""


async def _derived_or_failed(kafka: str, job: Any, raw: Path, timeout: float = 600) -> Any:
    """The job's ``file_derived`` event; as soon as the catalog says the job failed, its
    reason and what to do (never a wait to the end and a traceback)."""
    from assonant_ioc.catalog.record import record_key
    from assonant_ioc.catalog.store import Catalog

    catalog = await Catalog.open(_KEYS["db"])
    deadline = time.monotonic() + timeout
    try:
        while True:
            with contextlib.suppress(TimeoutError):
                return await consume_event(kafka, "assonant.derived", job.event_id, 2.0)
            result = ((await catalog.get(record_key(raw))) or {}).get("results", {})
            mine = result.get(job.pipeline, {})
            if mine.get("status") == "failed":
                hint = (
                    "nabu runs on the CPU through OpenCL: `bash scripts/nabu-cpu.sh` installs "
                    "its backend (pyopencl, PoCL, pyvkfft) into .venv"
                    if job.pipeline == "nabu"
                    else "its log is in the demo's logs directory (processor.log)"
                )
                raise DemoFailed(
                    f"\nthe reduction failed ({job.pipeline}): {mine.get('reason', '?')}\n"
                    f"what to do: {hint}, then run the demo again"
                )
            if time.monotonic() > deadline:
                raise DemoFailed(
                    f"\nno result from {job.pipeline} within {timeout:.0f} s "
                    f"(status: {mine.get('status', 'not started')}); see processor.log"
                )
    finally:
        await catalog.close()


if __name__ == "__main__":
    main()
