"""The data model: JSON round trip, readings, state machine."""

from __future__ import annotations

import json

import numpy as np
import pytest

from assonant_ioc.errors import CommandRefused
from assonant_ioc.model import codec
from assonant_ioc.model.components import ComponentClass, Moment
from assonant_ioc.model.readings import Reading, Severity
from assonant_ioc.model.state import Command, State, StateMachine
from tests.unit.factories import experiment


def test_json_round_trip_gives_an_equal_experiment() -> None:
    x = experiment()
    text = codec.to_json(x)
    back = codec.from_json(text)
    assert back == x
    # the classes, dtypes and shapes survive, not only the values
    mono = back.entries[0].instrument[0]
    assert mono.component_class is ComponentClass.MONOCHROMATOR
    assert mono.subcomponents[0].component_class is ComponentClass.MONOCHROMATOR_CRYSTAL
    spectrum = mono.fields["spectrum"].reading  # type: ignore[union-attr]
    assert (spectrum.dtype, spectrum.shape) == ("float64", (3,))
    frames = mono.fields["frames"].reading  # type: ignore[union-attr]
    assert (frames.dtype, frames.value) == ("int64", 7)
    assert json.loads(text)["entries"][0]["instrument"][0]["nx_class"] == "NXmonochromator"


def test_reading_of_numpy_values_keeps_dtype_and_shape() -> None:
    r = Reading.of("BL:img", np.arange(6, dtype=np.int16).reshape(2, 3), 1.0)
    assert (r.dtype, r.shape, r.value) == ("int16", (2, 3), (0, 1, 2, 3, 4, 5))
    s = Reading.of("BL:f", np.float32(1.5), 1.0, severity=2, status=3)
    assert (s.dtype, s.shape, s.value, s.severity, s.status) == (
        "float32",
        (),
        1.5,
        Severity.MAJOR,
        3,
    )
    assert codec.reading_from_dict(codec.reading_to_dict(r)) == r


def test_disconnected_reading_is_invalid_not_zero() -> None:
    r = Reading.disconnected("BL:gone", 5.0)
    assert r.value is None and not r.connected and r.severity is Severity.INVALID


def test_component_class_names_match_like_the_reference() -> None:
    assert ComponentClass.parse("Monochromator Crystal") is ComponentClass.MONOCHROMATOR_CRYSTAL
    assert ComponentClass.parse("storagering") is ComponentClass.STORAGE_RING
    assert ComponentClass.WIGGLER.nx_class == "NXinsertion_device"
    assert ComponentClass.DEWAR.nx_class == "NXcollection"
    with pytest.raises(ValueError, match="unknown component class"):
        ComponentClass.parse("Flux capacitor")


def run(machine: StateMachine, *cmds: Command) -> State:
    for cmd in cmds:
        machine.apply(cmd)
    return machine.state


def test_state_machine_full_experiment() -> None:
    m = StateMachine()
    assert run(m, Command.SNAPSHOT_PRE) is State.COLLECTING
    assert run(m, Command.RECORD_START) is State.RECORDING
    assert run(m, Command.RECORD_STOP) is State.COLLECTING
    assert run(m, Command.SNAPSHOT_POST) is State.COLLECTING
    assert m.captured == {Moment.PRE, Moment.DURING, Moment.POST}
    assert run(m, Command.END_OF_EXPERIMENT) is State.WRITING
    assert run(m, Command.WRITE_DONE) is State.IDLE
    assert m.captured == set()


@pytest.mark.parametrize(
    ("before", "cmd", "why"),
    [
        ((), Command.SNAPSHOT_POST, "nothing captured yet"),
        ((), Command.END_OF_EXPERIMENT, "no experiment in progress"),
        ((), Command.ABORT, "no experiment"),
        ((), Command.RECORD_STOP, "not recording"),
        ((Command.RECORD_START,), Command.RECORD_START, "already recording"),
        ((Command.SNAPSHOT_PRE,), Command.SNAPSHOT_PRE, "already taken"),
        ((Command.RECORD_START,), Command.END_OF_EXPERIMENT, "stop Record:During first"),
        ((Command.RECORD_START,), Command.SNAPSHOT_POST, "stop Record:During first"),
        ((Command.SNAPSHOT_PRE, Command.SNAPSHOT_POST), Command.SNAPSHOT_POST, "already taken"),
        ((Command.SNAPSHOT_PRE, Command.SNAPSHOT_POST), Command.RECORD_START, "post-exposure"),
        ((Command.SNAPSHOT_PRE, Command.END_OF_EXPERIMENT), Command.ABORT, "being written"),
    ],
)
def test_state_machine_refuses_what_makes_no_sense(
    before: tuple[Command, ...], cmd: Command, why: str
) -> None:
    m = StateMachine()
    run(m, *before)
    state, captured = m.state, set(m.captured)
    with pytest.raises(CommandRefused, match=why):
        m.apply(cmd)
    assert (m.state, m.captured) == (state, captured)  # a refusal changes nothing


def test_failed_write_keeps_the_experiment_for_a_retry_or_abort() -> None:
    m = StateMachine()
    run(m, Command.SNAPSHOT_PRE, Command.END_OF_EXPERIMENT, Command.WRITE_FAILED)
    assert m.state is State.FAULT and Moment.PRE in m.captured
    assert run(m, Command.END_OF_EXPERIMENT) is State.WRITING
    run(m, Command.WRITE_FAILED)
    assert run(m, Command.ABORT) is State.IDLE
