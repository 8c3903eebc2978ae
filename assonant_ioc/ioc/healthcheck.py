"""Exit 0 when the IOC answers and its ``$(P)Heartbeat`` advances, 1 otherwise: a container's
HEALTHCHECK (the prefix from ``ASSONANT_PREFIX``, default ``SIM:ASSONANT:``).

    python -m assonant_ioc.ioc.healthcheck [PREFIX]
"""

from __future__ import annotations

import os
import sys
import time


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


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    prefix = args[0] if args else os.environ.get("ASSONANT_PREFIX", "SIM:ASSONANT:")
    try:
        ok = healthy(prefix)
    except Exception as err:  # noqa: BLE001 - unhealthy, with the reason
        sys.stderr.write(f"{prefix}Heartbeat: {type(err).__name__}: {err}\n")
        return 1
    if not ok:
        sys.stderr.write(f"{prefix}Heartbeat does not advance\n")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
