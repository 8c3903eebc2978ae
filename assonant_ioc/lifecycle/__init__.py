"""The experiment's lifecycle below the IOC: state machine, journal, file build, outbox, recovery.

No Channel Access in this package: the IOC maps PVs to :class:`Lifecycle` calls.
"""

from assonant_ioc.lifecycle.experiment import Lifecycle
from assonant_ioc.lifecycle.reporter import Reporter
from assonant_ioc.lifecycle.settings import Settings, StepFailed

__all__ = ["Lifecycle", "Reporter", "Settings", "StepFailed"]
