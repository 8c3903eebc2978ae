"""What a controls group loads into its own tools, generated from the IOC's PVs: a Phoebus
alarm-server configuration (the PVs with alarms, each with its guidance) and an Archiver
Appliance PV list (every status and health PV).

    assonant-ioc alarms --prefix MOGNO:META: [-o alarms.xml] [--archiver pvs.json]
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from assonant_ioc.arguments import Parser
from assonant_ioc.ioc.server import AssonantIOC

#: (PV, description, guidance on what to do, delay in seconds before it alarms)
ALARMED = (
    (
        "State",
        "assonant-ioc in Fault",
        "LastError says why. Fix it (room on the disk, a writable DataDir), then "
        "EndOfExperiment writes the file again; or Abort, which discards the experiment.",
        0,
    ),
    (
        "KafkaConnected",
        "assonant-ioc cannot reach its Kafka broker",
        "Files are still written; their events wait in the outbox (EventsPending) and go "
        "out when the broker answers. Check the broker and the network to it.",
        30,
    ),
    (
        "EventsPending",
        "file_written events waiting in the outbox",
        "The broker has not acknowledged them: see KafkaConnected and LastError. Nothing "
        "is lost; they are sent in order when it answers.",
        0,
    ),
    (
        "StateDirOK",
        "assonant-ioc's state directory cannot take the experiment",
        "What is captured is held in memory (NotDurable) and retried every second: make "
        "room in the state directory. EndOfExperiment is refused until it is durable.",
        0,
    ),
    (
        "NotDurable",
        "readings captured but not yet on disk",
        "The state directory cannot take them (see StateDirOK, LastError): make room.",
        0,
    ),
    (
        "LoopLag",
        "assonant-ioc's event loop runs late",
        "The host is overloaded or the IOC is stuck on something: see CPULoad and the log.",
        10,
    ),
    (
        "MemUsed",
        "assonant-ioc uses more memory than its limit",
        "See NotDurable (captured readings held in memory) and the log; restart it between "
        "experiments if it keeps growing.",
        60,
    ),
)


def alarm_config(prefix: str, name: str = "assonant") -> str:
    """The Phoebus alarm-server XML (``config`` > ``component`` > ``pv``)."""
    config = ET.Element("config", name=name)
    component = ET.SubElement(config, "component", name=f"assonant-ioc {prefix.rstrip(':')}")
    for pv, description, guidance, delay in ALARMED:
        node = ET.SubElement(component, "pv", name=f"{prefix}{pv}")
        ET.SubElement(node, "description").text = description
        ET.SubElement(node, "enabled").text = "true"
        ET.SubElement(node, "latching").text = "false"
        ET.SubElement(node, "annunciating").text = "false"
        if delay:
            ET.SubElement(node, "delay").text = str(delay)
        help_node = ET.SubElement(node, "guidance")
        ET.SubElement(help_node, "title").text = "What to do"
        ET.SubElement(help_node, "details").text = guidance
    ET.indent(config)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(config, "unicode") + "\n"


def archiver_pvs(prefix: str) -> list[dict[str, Any]]:
    """The Archiver Appliance's bulk list (``archivePV``): every status and health PV, on
    change (numbers that change every second, once a second)."""
    every_second = {"Heartbeat", "Uptime", "CPULoad", "MemUsed", "UpdateRate", "LoopLag"}
    out = []
    for pv in (*AssonantIOC.STATUS, *AssonantIOC.HEALTH, *AssonantIOC.SETTINGS):
        scan = pv in every_second
        out.append(
            {
                "pv": f"{prefix}{pv}",
                "samplingmethod": "SCAN" if scan else "MONITOR",
                "samplingperiod": "1.0" if scan else "0.1",
            }
        )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = Parser(prog="assonant-ioc alarms", description=__doc__)
    parser.add_argument("--prefix", required=True, help="the IOC's PV prefix")
    parser.add_argument("-o", "--output", help="the alarm config (default: stdout)")
    parser.add_argument("--archiver", help="also write the Archiver Appliance PV list (JSON)")
    parser.add_argument("--name", default="assonant", help="the alarm config's name")
    args = parser.parse_args(argv)
    text = alarm_config(args.prefix, args.name)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    if args.archiver:
        Path(args.archiver).write_text(json.dumps(archiver_pvs(args.prefix), indent=1) + "\n")
