"""Serve the simulated beamline's EPICS records (``db/``) from a real C IOC (epicscorelibs).

Usage: ``python -m assonant_ioc.sim.softioc --db-dir db --prefix SIM:``. Set
EPICS_CAS_SERVER_PORT / EPICS_CAS_INTF_ADDR_LIST to choose where it listens.
Runs until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--db-dir",
        default=str(Path(__file__).resolve().parent / "db"),
        help="folder with sim_beamline.substitutions (default: the one shipped in the package)",
    )
    parser.add_argument("--prefix", default="SIM:", help="PV prefix, the P macro")
    parser.add_argument(
        "--substitutions",
        default="sim_beamline.substitutions",
        help="substitutions file inside --db-dir (default: the simulated beamline)",
    )
    args = parser.parse_args(argv)

    from epicscorelibs import ioc  # loads libCom/dbCore: import only when running

    db_dir = Path(args.db_dir).resolve()
    ioc.iocshRegisterCommon()
    if ioc.dbLoadDatabase(b"base.dbd", ioc.DEFAULT_DBD_PATH.encode(), None):
        raise SystemExit("cannot load base.dbd")
    if ioc.registerRecordDeviceDriver(ioc.pdbbase):
        raise SystemExit("cannot register record support")
    os.chdir(db_dir)  # dbLoadTemplate finds the templates beside the substitutions file
    if ioc.ioc(f'dbLoadTemplate("{args.substitutions}", "P={args.prefix}")'):
        raise SystemExit(f"cannot load {db_dir / args.substitutions}")
    if ioc.iocInit():
        raise SystemExit("iocInit failed")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print("softioc running", flush=True)
    stop.wait()


if __name__ == "__main__":
    main()
