"""PV monitor: the Channel Access client (the only module that talks CA as a client)."""

from assonant_ioc.monitor.ca import PVMonitor

__all__ = ["PVMonitor"]
