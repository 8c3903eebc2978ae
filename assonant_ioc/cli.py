"""The ``assonant-ioc`` command: run the IOC, or one of its tools.

usage: assonant-ioc [serve] --config FILE [...]   run the IOC (serve --help: its options)
       assonant-ioc check --config FILE           which PVs of a config answer, units, types
       assonant-ioc inspect FILE                  a NeXus file's tree, with each value's PV
       assonant-ioc panel [-o FILE]               (re)generate the Phoebus panel

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
    from assonant_ioc.ioc.server import main as ioc

    ioc(argv)


if __name__ == "__main__":
    main()
