"""What a PVA update is made into (the monitor's decoding of normative types) and what a
PVA put is made into (the CA write the IOC's guard takes), without a network."""

from __future__ import annotations

import numpy as np
from caproto import ChannelType
from caproto.server import PVGroup, pvproperty

from assonant_ioc.ioc.pva_server import _as_ca, _posted
from assonant_ioc.monitor.pva import CA_CONDITIONS, decoded


def _value(nt: object, value: object, **fields: object) -> object:
    wrapped = nt.wrap(value)  # type: ignore[attr-defined]
    for key, item in fields.items():
        wrapped[key.replace("__", ".")] = item
    return wrapped


def test_a_scalar_its_alarm_as_cas_condition_its_stamp_and_units() -> None:
    from p4p.nt import NTScalar

    v = _value(
        NTScalar("d", display=True),
        326.5,
        alarm__severity=2,
        alarm__status=3,
        alarm__message="HIHI",
        timeStamp__secondsPastEpoch=1_790_000_000,
        timeStamp__nanoseconds=250_000_000,
        display__units="K",
    )
    assert decoded(v) == (326.5, 1_790_000_000.25, 2, CA_CONDITIONS.index("HIHI"), "K")


def test_an_enum_is_its_index_an_array_its_numbers_no_stamp_the_arrival() -> None:
    from p4p.nt import NTEnum, NTScalar

    value, t, severity, status, units = decoded(
        _value(NTEnum(), {"index": 2, "choices": list("abc")})
    )
    assert (value, severity, status, units) == (2, 0, 0, None) and t > 1.7e9
    array = decoded(_value(NTScalar("ad"), np.arange(4.0)))[0]
    np.testing.assert_array_equal(array, [0.0, 1.0, 2.0, 3.0])
    # a status the message does not name: PVA's own code; none without an alarm
    v = _value(NTScalar("i"), 5, alarm__severity=1, alarm__status=2, alarm__message="drive")
    assert decoded(v)[2:4] == (1, 2)


class _Pvs(PVGroup):
    cmd = pvproperty(name="Cmd", value=0)
    text = pvproperty(
        name="Text", value="", dtype=ChannelType.CHAR, max_length=64, string_encoding="utf-8"
    )
    state = pvproperty(
        name="State", value="Idle", dtype=ChannelType.ENUM, enum_strings=["Idle", "Busy"]
    )
    x = pvproperty(name="X", value=1.5, units="mm")


def test_a_pva_put_is_the_write_a_ca_client_sends() -> None:
    from p4p.nt import NTScalar

    pvs = _Pvs("T:")
    data, kind = _as_ca(pvs.text, NTScalar("s").unwrap(NTScalar("s").wrap("über")))
    assert kind is ChannelType.CHAR and bytes(data) == "über".encode() + b"\0"
    assert _as_ca(pvs.cmd, 1) == ([1], ChannelType.LONG)
    assert _as_ca(pvs.cmd, 1.5) == ([1.5], ChannelType.DOUBLE)  # refused as over CA
    assert _as_ca(pvs.x, 2) == ([2], ChannelType.LONG)
    assert _as_ca(pvs.x, 2.25) == ([2.25], ChannelType.DOUBLE)


def test_a_ca_value_posted_over_pva() -> None:
    pvs = _Pvs("T:")
    assert _posted(pvs.state)["value.index"] == 0 and _posted(pvs.state)["value.choices"] == [
        "Idle",
        "Busy",
    ]
    posted = _posted(pvs.x)
    assert (
        posted["value"] == 1.5 and posted["alarm.severity"] == 0 and posted["alarm.message"] == ""
    )
