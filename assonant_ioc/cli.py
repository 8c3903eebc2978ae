"""The ``assonant-ioc`` command: run the IOC, or one of its tools.

usage: assonant-ioc [serve] --config FILE [...]   run the IOC (serve --help: its options)
       assonant-ioc check --config FILE           which PVs of a config answer, units, types
       assonant-ioc inspect FILE                  a NeXus file's tree, with each value's PV
       assonant-ioc panel [-o FILE]               (re)generate the Phoebus panel
       assonant-ioc configs                       the configs shipped (--config NAME)
       assonant-ioc demo [--data-dir DIR]         broker, sim beamline, IOC, one experiment
       assonant-ioc sim [--kind caproto|c]        the simulated beamline alone
       assonant-ioc catalog [consume|serve|backfill|search]
                                                  the data catalog fed by the events (tiled)

Each subcommand takes --help.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv else ""
    if command in ("", "-h", "--help"):
        sys.stdout.write((__doc__ or "").split("\n", 2)[2])
        raise SystemExit(0 if command else 2)
    if command == "serve":
        argv, command = argv[1:], "serve"
    if command == "check":
        from assonant_ioc.monitor.check import main as check

        raise SystemExit(check(argv[1:]))
    if command == "inspect":
        from assonant_ioc.nexus.inspect import main as inspect

        raise SystemExit(inspect(argv[1:]))
    if command == "panel":
        from assonant_ioc.ioc.panel import main as panel

        panel(argv[1:])
        return
    if command == "configs":
        from assonant_ioc.config.loader import packaged_configs

        if argv[1:2] in (["-h"], ["--help"]):
            sys.stdout.write("usage: assonant-ioc configs   (the configs shipped, by name)\n")
            return
        for path in packaged_configs():
            first = path.read_text(encoding="utf-8").splitlines()[0].lstrip("# ").rstrip(", ")
            sys.stdout.write(f"{path.stem:14} {first[:70]}\n")
        sys.stdout.write("use one by name: assonant-ioc --config sim ...\n")
        return
    if command == "demo":
        from assonant_ioc.sim.demo import main as demo

        demo(argv[1:])
        return
    if command == "sim":
        _sim(argv[1:])
        return
    if command == "catalog":
        try:
            from assonant_ioc.catalog.cli import main as catalog
        except ImportError as err:
            sys.stderr.write(
                f"assonant-ioc catalog: needs tiled: pip install 'assonant-ioc[catalog]' ({err})\n"
            )
            raise SystemExit(2) from None
        raise SystemExit(catalog(argv[1:]))
    from assonant_ioc.ioc.main import main as ioc

    ioc(argv)


def _sim(argv: list[str]) -> None:
    """The simulated beamline alone: the caproto IOC (default) or the C IOC."""
    kind = "caproto"
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
