"""systemd's readiness protocol (``Type=notify``) without a dependency: a datagram to
``$NOTIFY_SOCKET``. Nothing happens when the IOC is not started by systemd."""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


def notify(message: str) -> bool:
    """Send ``message`` (``READY=1``, ``STATUS=...``, ``WATCHDOG=1``, ``STOPPING=1``) to
    systemd; False when there is no ``$NOTIFY_SOCKET`` or it cannot be reached (logged)."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as err:
        log.warning("cannot notify systemd at %s: %s", address, err)
        return False
    return True


def watchdog_period() -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half systemd's ``WatchdogSec``), or None."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2e6
