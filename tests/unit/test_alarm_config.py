"""The alarm-server config and the archiver list, read as their tools read them."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from assonant_ioc.ioc.alarm_config import ALARMED, alarm_config, archiver_pvs
from assonant_ioc.ioc.server import AssonantIOC


def _load_like_the_alarm_server(text: str) -> dict[str, dict[str, object]]:
    """What Phoebus' alarm server makes of the XML (its model reader's rules): a ``config``
    root with a name; ``component``s with names unique under their parent; ``pv``s with
    names unique in the whole config; ``enabled`` true/false (missing: true), ``latching``
    and ``annunciating`` (missing: false), ``delay`` a number; guidance as title and
    details. Anything else it would refuse raises here."""
    root = ET.fromstring(text)
    assert root.tag == "config" and root.get("name"), "expected <config name=...>"
    pvs: dict[str, dict[str, object]] = {}

    def component(node: ET.Element, path: str) -> None:
        names = [c.get("name") for c in node.findall("component")]
        assert None not in names and len(names) == len(set(names)), f"at {path}"
        for pv in node.findall("pv"):
            name = pv.get("name")
            assert name and name not in pvs, f"PV without a name or twice at {path}"
            flags = {}
            for tag, default in (
                ("enabled", "true"),
                ("latching", "false"),
                ("annunciating", "false"),
            ):
                value = (pv.findtext(tag) or default).strip().lower()
                assert value in ("true", "false"), f"{name}: {tag} {value!r}"
                flags[tag] = value == "true"
            delay = pv.findtext("delay") or "0"
            float(delay)  # a number
            guidance = [
                (g.findtext("title"), g.findtext("details")) for g in pv.findall("guidance")
            ]
            assert all(t and d for t, d in guidance), f"{name}: guidance without title/details"
            pvs[name] = {**flags, "description": pv.findtext("description"), "guidance": guidance}
        for child in node.findall("component"):
            component(child, f"{path}/{child.get('name')}")

    component(root, root.get("name", ""))
    return pvs


def test_the_alarm_config_loads_and_names_only_the_iocs_alarmed_pvs() -> None:
    loaded = _load_like_the_alarm_server(alarm_config("MOGNO:META:"))
    on_ioc = {prop.pvspec.name for prop in AssonantIOC._pvs_.values()}
    names = {name.removeprefix("MOGNO:META:") for name in loaded}
    assert names == {pv for pv, *_ in ALARMED} and names <= on_ioc
    state = loaded["MOGNO:META:State"]
    assert state["enabled"] is True and state["description"] == "assonant-ioc in Fault"
    assert "Abort" in str(state["guidance"])


def test_the_archiver_list_has_every_status_and_health_pv_once() -> None:
    pvs = archiver_pvs("MOGNO:META:")
    names = [p["pv"] for p in pvs]
    assert len(names) == len(set(names))
    for pv in (*AssonantIOC.STATUS, *AssonantIOC.HEALTH):
        assert f"MOGNO:META:{pv}" in names
    assert all(p["samplingmethod"] in ("MONITOR", "SCAN") for p in pvs)


def test_the_command_writes_both(tmp_path: Path) -> None:
    out, archive = tmp_path / "alarms.xml", tmp_path / "pvs.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "assonant_ioc.cli",
            "alarms",
            "--prefix",
            "BL:A:",
            "-o",
            str(out),
            "--archiver",
            str(archive),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "BL:A:EventsPending" in _load_like_the_alarm_server(out.read_text())
    assert json.loads(archive.read_text())[0]["pv"].startswith("BL:A:")


@pytest.mark.parametrize("bad", ["<alarms name='x'/>", "<config/>"])
def test_the_reader_refuses_what_the_alarm_server_refuses(bad: str) -> None:
    with pytest.raises(AssertionError):
        _load_like_the_alarm_server(bad)
