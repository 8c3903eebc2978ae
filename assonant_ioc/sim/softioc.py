"""Serve the simulated beamline's EPICS records (``db/``) from a real C IOC (epicscorelibs).

Usage: ``python -m assonant_ioc.sim.softioc --db-dir db --prefix SIM:``. Set
EPICS_CAS_SERVER_PORT / EPICS_CAS_INTF_ADDR_LIST to choose where it listens. With
``--pva`` it serves every record over PVAccess too (pvxs' QSRV, as an EPICS 7 IOC does:
NTScalar, NTEnum, NTScalarArray with their alarms, timestamps and display); set
EPICS_PVAS_SERVER_PORT / EPICS_PVAS_BROADCAST_PORT / EPICS_PVAS_INTF_ADDR_LIST.
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
    parser.add_argument("--pva", action="store_true", help="serve the records over PVA too")
    args = parser.parse_args(argv)

    from epicscorelibs import ioc  # loads libCom/dbCore: import only when running

    dbds = [("base.dbd", ioc.DEFAULT_DBD_PATH)]
    if args.pva:
        import ctypes

        import pvxslibs.path
        from setuptools_dso.runtime import find_dso

        os.environ.setdefault("PVXS_QSRV_ENABLE", "YES")
        ctypes.CDLL(find_dso("pvxslibs.lib.pvxsIoc"), ctypes.RTLD_GLOBAL)
        dbds.append(("pvxsIoc.dbd", pvxslibs.path.dbd_path))
    db_dir = Path(args.db_dir).resolve()
    ioc.iocshRegisterCommon()
    for dbd, where in dbds:
        if ioc.dbLoadDatabase(dbd.encode(), where.encode(), None):
            raise SystemExit(f"cannot load {dbd}")
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
