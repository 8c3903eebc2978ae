"""The ``assonant-ioc`` command: run the IOC, or one of its tools.

usage: assonant-ioc [serve] --config FILE [...]   run the IOC (serve --help: its options)
       assonant-ioc check --config FILE           which PVs of a config answer, units, types
       assonant-ioc inspect FILE                  a NeXus file's tree, with each value's PV
       assonant-ioc panel [-o FILE]               (re)generate the Phoebus panel
       assonant-ioc alarms --prefix P [-o FILE] [--archiver FILE]
                                                  the alarm-server config, the archiver list
       assonant-ioc configs                       the configs shipped (--config NAME)
       assonant-ioc demo [--data-dir DIR]         broker, sim beamline, IOC, one experiment
       assonant-ioc sim [--kind caproto|c]        the simulated beamline alone
       assonant-ioc catalog [consume|serve|backfill|search]
                                                  the data catalog fed by the events (tiled)
       assonant-ioc bluesky --config FILE --topic T   a file per Bluesky run, from the
                                                  documents bluesky-kafka publishes
       assonant-ioc process --processed-root DIR  reduce every file announced (nabu, pyFAI,
                                                  xraylarch): derived files, file_derived
       assonant-ioc page --catalog-url URL        the scientists' page over the catalog

Each subcommand takes --help.
"""

from __future__ import annotations

import importlib
import os
import sys
import textwrap

COMMANDS = (
    "serve",
    "check",
    "inspect",
    "panel",
    "alarms",
    "configs",
    "demo",
    "sim",
    "catalog",
    "bluesky",
    "process",
    "page",
)


#: the tools, each a module's ``main(argv)``, and the extra it needs (its module, its name)
TOOLS: dict[str, tuple[str, tuple[str, str] | None]] = {
    "check": ("assonant_ioc.monitor.check", None),
    "inspect": ("assonant_ioc.nexus.inspect", None),
    "panel": ("assonant_ioc.ioc.panel", None),
    "alarms": ("assonant_ioc.ioc.alarm_config", None),
    "demo": ("assonant_ioc.sim.demo", None),
    "catalog": ("assonant_ioc.catalog.cli", ("tiled", "catalog")),
    "bluesky": ("assonant_ioc.documents.consumer", ("msgpack_numpy", "bluesky")),
    "process": ("assonant_ioc.processing.cli", ("tiled", "catalog")),
    "page": ("assonant_ioc.page.server", None),
}


def installed(module: str) -> bool:
    """Whether ``module`` (an extra's top package: light to import) can be imported."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def needs(command: str, module: str, extra: str) -> None:
    """One line and exit 2 when ``command`` needs an extra that is not installed."""
    if not installed(module):
        sys.stderr.write(
            f"assonant-ioc {command}: needs {module}: pip install 'assonant-ioc[{extra}]'\n"
        )
        raise SystemExit(2)


def main(argv: list[str] | None = None) -> None:
    """The command; its output cut short by its reader (``assonant-ioc configs | head``)
    ends it quietly, as ``ls | head`` ends ``ls``."""
    try:
        _main(argv)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)  # Python's own flush at exit goes nowhere
        os.dup2(devnull, sys.stdout.fileno())
        raise SystemExit(1) from None


def _main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv else ""
    if command in ("", "-h", "--help"):
        sys.stdout.write((__doc__ or "").split("\n", 2)[2])
        raise SystemExit(0 if command else 2)
    if not command.startswith("-") and command not in COMMANDS:
        sys.stderr.write(
            f"assonant-ioc: unknown command {command!r} (commands: {', '.join(COMMANDS)}; "
            "assonant-ioc --help)\n"
        )
        raise SystemExit(2)
    if command == "serve":
        argv, command = argv[1:], "serve"
    if command == "configs":
        _configs(argv[1:])
        return
    if command == "sim":
        _sim(argv[1:])
        return
    if command == "demo" and "--catalog" in argv[1:]:
        needs("demo --catalog", "tiled", "catalog")
    if command in TOOLS:
        module, extra = TOOLS[command]
        if extra is not None:
            needs(command, *extra)
        done = importlib.import_module(module).main(argv[1:])
        if done is not None:  # the tools that say how they ended
            raise SystemExit(done)
        return
    from assonant_ioc.ioc.main import main as ioc

    ioc(argv)


def _configs(argv: list[str]) -> None:
    from assonant_ioc.config.loader import packaged_configs

    if argv[:1] in (["-h"], ["--help"]):
        sys.stdout.write("usage: assonant-ioc configs   (the configs shipped, by name)\n")
        return
    for path in packaged_configs():
        first = path.read_text(encoding="utf-8").splitlines()[0].lstrip("# ").rstrip(", ")
        sys.stdout.write(f"{path.stem:14} {textwrap.shorten(first, 70, placeholder=' ...')}\n")
    sys.stdout.write("use one by name: assonant-ioc --config sim ...\n")


def _sim(argv: list[str]) -> None:
    """The simulated beamline alone: the caproto IOC (default) or the C IOC."""
    kind = "caproto"
    if argv[:1] in (["-h"], ["--help"]):
        sys.stdout.write(
            "usage: assonant-ioc sim [--kind caproto|c] [the beamline's options]\n"
            "  --kind caproto   the caproto simulated beamline (default; its options below)\n"
            "  --kind c         the same PVs from a C IOC (extra sim: epicscorelibs)\n\n"
        )
    if "--kind" in argv:
        at = argv.index("--kind")
        kind = argv[at + 1] if at + 1 < len(argv) else ""
        argv = argv[:at] + argv[at + 2 :]
    if kind == "caproto":
        from assonant_ioc.sim.beamline import main as beamline

        beamline(argv)
    elif kind == "c":
        try:
            from assonant_ioc.sim.softioc import main as softioc
        except ImportError as err:
            sys.stderr.write(
                f"assonant-ioc sim --kind c: needs epicscorelibs: pip install 'assonant-ioc[sim]'"
                f" ({err})\n"
            )
            raise SystemExit(2) from None
        softioc(argv)
    else:
        sys.stderr.write(f"assonant-ioc sim: --kind caproto or c, not {kind!r}\n")
        raise SystemExit(2)


if __name__ == "__main__":
    main()
