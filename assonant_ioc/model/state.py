"""The experiment state machine: which command is allowed when, and what it leads to."""

from __future__ import annotations

import enum

from assonant_ioc.errors import CommandRefused
from assonant_ioc.model.components import Moment


class State(enum.IntEnum):
    """Values of the ``State`` mbbi PV (the order is part of the PV contract)."""

    IDLE = 0
    COLLECTING = 1
    RECORDING = 2
    WRITING = 3
    FAULT = 4

    @property
    def label(self) -> str:
        return self.name.capitalize()


class Command(enum.Enum):
    SNAPSHOT_PRE = "Snapshot:Pre"
    RECORD_START = "Record:During=1"
    RECORD_STOP = "Record:During=0"
    SNAPSHOT_POST = "Snapshot:Post"
    END_OF_EXPERIMENT = "EndOfExperiment"
    ABORT = "Abort"
    WRITE_DONE = "write done"
    WRITE_FAILED = "write failed"


class StateMachine:
    """Tracks the state and the moments captured; refuses commands that make no sense."""

    def __init__(self) -> None:
        self.state = State.IDLE
        self.captured: set[Moment] = set()

    def check(self, cmd: Command) -> State:
        """Return the state ``cmd`` leads to, or raise :class:`CommandRefused` saying why."""
        s, done = self.state, self.captured
        if cmd is Command.SNAPSHOT_PRE:
            if s is State.IDLE:
                return State.COLLECTING
            if Moment.PRE in done:
                raise CommandRefused("Snapshot:Pre refused: pre-exposure snapshot already taken")
            raise CommandRefused(f"Snapshot:Pre refused: an experiment is already {s.label}")
        if cmd is Command.RECORD_START:
            if s is State.RECORDING:
                raise CommandRefused("Record:During=1 refused: already recording")
            if s in (State.IDLE, State.COLLECTING) and Moment.DURING in done:
                raise CommandRefused("Record:During=1 refused: during-exposure already recorded")
            if s is State.COLLECTING and Moment.POST in done:
                raise CommandRefused("Record:During=1 refused: post-exposure snapshot taken")
            if s in (State.IDLE, State.COLLECTING):
                return State.RECORDING
            raise CommandRefused(f"Record:During=1 refused in state {s.label}")
        if cmd is Command.RECORD_STOP:
            if s is State.RECORDING:
                return State.COLLECTING
            raise CommandRefused("Record:During=0 refused: not recording")
        if cmd is Command.SNAPSHOT_POST:
            if s is State.IDLE:
                raise CommandRefused(
                    "Snapshot:Post refused: nothing captured yet "
                    "(start with Snapshot:Pre or Record:During)"
                )
            if s is State.RECORDING:
                raise CommandRefused("Snapshot:Post refused: stop Record:During first")
            if s is State.COLLECTING and Moment.POST in done:
                raise CommandRefused("Snapshot:Post refused: post-exposure snapshot already taken")
            if s is State.COLLECTING:
                return State.COLLECTING
            raise CommandRefused(f"Snapshot:Post refused in state {s.label}")
        if cmd is Command.END_OF_EXPERIMENT:
            if s in (State.COLLECTING, State.FAULT):
                return State.WRITING
            if s is State.IDLE:
                raise CommandRefused("EndOfExperiment refused: no experiment in progress")
            if s is State.RECORDING:
                raise CommandRefused("EndOfExperiment refused: stop Record:During first")
            raise CommandRefused("EndOfExperiment refused: already writing")
        if cmd is Command.ABORT:
            if s in (State.COLLECTING, State.RECORDING, State.FAULT):
                return State.IDLE
            if s is State.IDLE:
                raise CommandRefused("Abort refused: no experiment in progress")
            raise CommandRefused("Abort refused: the file is being written")
        if cmd is Command.WRITE_DONE and s is State.WRITING:
            return State.IDLE
        if cmd is Command.WRITE_FAILED and s is State.WRITING:
            return State.FAULT
        raise CommandRefused(f"{cmd.value} refused in state {s.label}")

    def apply(self, cmd: Command) -> State:
        """Check ``cmd`` and move to the state it leads to."""
        new = self.check(cmd)
        if cmd is Command.SNAPSHOT_PRE:
            self.captured.add(Moment.PRE)
        elif cmd is Command.RECORD_STOP:
            self.captured.add(Moment.DURING)
        elif cmd is Command.SNAPSHOT_POST:
            self.captured.add(Moment.POST)
        if new is State.IDLE:
            self.captured.clear()
        self.state = new
        return new
