"""Where PVAccess servers and clients of the tests, the bench and the demo look: loopback
only, each server on ports of its own (the PVA twin of ``procs.ca_server_env`` and
``procs.ca_client_env``)."""

from __future__ import annotations


def pva_server_env(tcp: int, udp: int) -> dict[str, str]:
    """Environment for a PVA server on 127.0.0.1 only: its TCP port and its UDP search port."""
    return {
        "EPICS_PVAS_INTF_ADDR_LIST": "127.0.0.1",
        "EPICS_PVAS_SERVER_PORT": str(tcp),
        "EPICS_PVAS_BROADCAST_PORT": str(udp),
        "EPICS_PVAS_AUTO_BEACON_ADDR_LIST": "NO",
        "EPICS_PVAS_BEACON_ADDR_LIST": "127.0.0.1",
    }


def pva_client_env(*udp_ports: int) -> dict[str, str]:
    """Environment for a PVA client that searches only the given loopback servers (each by
    its UDP search port)."""
    return {
        "EPICS_PVA_ADDR_LIST": " ".join(f"127.0.0.1:{p}" for p in udp_ports),
        "EPICS_PVA_AUTO_ADDR_LIST": "NO",
    }


def pva_answers(pv: str, udp: int) -> bool:
    """Whether ``pv`` answers a PVA read from the server whose search port is ``udp``."""
    from p4p.client.thread import Context

    conf = pva_client_env(udp)
    try:
        with Context("pva", conf=conf, useenv=False) as ctx:
            ctx.get(pv, timeout=1.0)
        return True
    except Exception:  # noqa: BLE001 - not ready yet
        return False
