"""What the operator set when a command arrived, and the failure of a step."""

from __future__ import annotations

from dataclasses import dataclass


class StepFailed(Exception):
    """A step failed; the state is Fault and the reason was reported."""


@dataclass(frozen=True)
class Settings:
    """The operator's settings when a command arrives."""

    experiment_id: str = ""
    sample: str = ""
    #: the Proposal PV ("": the config's default)
    proposal: str = ""
    comment: str = ""
    data_dir: str = ""
    file_name: str = ""
    counter: int = 0
    #: who wrote the command (``user@host`` as the CA client gave them), for the audit
    who: str = ""
