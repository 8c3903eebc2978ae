"""Exit 0 when the IOC answers and its ``$(P)Heartbeat`` advances, 1 otherwise: a container's
HEALTHCHECK (the prefix from ``ASSONANT_PREFIX``, default ``SIM:ASSONANT:``).

    python -m assonant_ioc.ioc.healthcheck [PREFIX]
    python -m assonant_ioc.ioc.healthcheck --answers PV     (any PV of this container answers)

It asks the server of its own container only (127.0.0.1, on ``EPICS_CAS_SERVER_PORT``, else
``EPICS_CA_SERVER_PORT``, else 5064), whatever ``EPICS_CA_ADDR_LIST`` says: in the IOC's
container that list names the beamline's IOCs, which do not serve the IOC's own PVs.
"""

from __future__ import annotations

import os
import sys
import time


def _own_server() -> None:
    """The CA client of this process searches this container's server only."""
    port = os.environ.get("EPICS_CAS_SERVER_PORT") or os.environ.get("EPICS_CA_SERVER_PORT", "5064")
    os.environ["EPICS_CA_ADDR_LIST"] = f"127.0.0.1:{port}"
    os.environ["EPICS_CA_AUTO_ADDR_LIST"] = "NO"


def healthy(prefix: str, timeout: float = 5.0) -> bool:
    from caproto.sync.client import read

    def beat() -> int:
        return int(read(f"{prefix}Heartbeat", timeout=timeout, repeater=False).data[0])

    first = beat()
    deadline = time.monotonic() + 3.0  # the heartbeat moves once a second
    while time.monotonic() < deadline:
        time.sleep(0.2)
        if beat() != first:
            return True
    return False


def answers(pv: str, timeout: float = 5.0) -> bool:
    from caproto.sync.client import read

    read(pv, timeout=timeout, repeater=False)
    return True


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    _own_server()
    pv = args[1] if args[:1] == ["--answers"] and len(args) == 2 else ""
    prefix = args[0] if args and not pv else os.environ.get("ASSONANT_PREFIX", "SIM:ASSONANT:")
    what = pv or f"{prefix}Heartbeat"
    try:
        ok = answers(pv) if pv else healthy(prefix)
    except Exception as err:  # noqa: BLE001 - unhealthy, with the reason
        sys.stderr.write(f"{what}: {type(err).__name__}: {err}\n")
        return 1
    if not ok:
        sys.stderr.write(f"{what} does not advance\n")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
