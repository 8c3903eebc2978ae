"""Generate the Phoebus panel (``.bob``) from the IOC's own PV definitions.

Widgets follow the record types: char waveforms (long strings) are text widgets
in String format, enums are LEDs, numbers are text updates, commands are
buttons that write the command value. The panel takes the macro ``P``.
Regenerate with ``assonant-ioc panel -o panels/assonant_ioc.bob``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from caproto import ChannelType

from assonant_ioc.arguments import Parser
from assonant_ioc.ioc.server import AssonantIOC

DEFAULT_PANEL = Path("panels") / "assonant_ioc.bob"
DEFAULT_PREFIX = "SIM:ASSONANT:"

#: (button text, PV, value, confirmation or None)
BUTTONS = (
    ("Pre snapshot", "Snapshot:Pre", 1, None),
    ("Start recording", "Record:During", 1, None),
    ("Stop recording", "Record:During", 0, None),
    ("Post snapshot", "Snapshot:Post", 1, None),
    ("End of experiment", "EndOfExperiment", 1, None),
    ("Abort", "Abort", 1, "Discard the experiment in progress? Nothing will be written."),
)
#: State colours: Idle grey, Collecting green, Recording blue, Writing yellow, Fault red.
STATE_COLOURS = ((160, 160, 160), (0, 200, 0), (0, 120, 255), (255, 200, 0), (255, 0, 0))
ROW, LABEL_W, VALUE_W, X0 = 28, 150, 520, 10


def pv_specs() -> dict[str, Any]:
    """The IOC's pvspecs by PV name (without prefix)."""
    return {prop.pvspec.name: prop.pvspec for prop in AssonantIOC._pvs_.values()}


def is_long_string(spec: Any) -> bool:
    return spec.dtype == ChannelType.CHAR


def is_enum(spec: Any) -> bool:
    return spec.dtype == ChannelType.ENUM


def build_panel() -> Any:
    """The panel as a phoebusgen Screen."""
    from phoebusgen import screen, widget

    specs = pv_specs()
    panel = screen.Screen("assonant-ioc")
    panel.macro("P", DEFAULT_PREFIX)
    y = 10

    def label(text: str, x: int = X0, width: int = LABEL_W, bold: bool = False) -> None:
        w = widget.Label(f"label {text}", text, x, y, width, ROW - 4)
        if bold:
            w.font_style_bold()
        panel.add_widget(w)

    def section(title: str) -> None:
        nonlocal y
        y += 8
        label(title, width=LABEL_W + VALUE_W, bold=True)
        y += ROW

    title = widget.Label("title", "assonant-ioc  $(P)", X0, y, LABEL_W + VALUE_W, 30)
    title.font_size(18)
    title.font_style_bold()
    panel.add_widget(title)
    y += 36

    section("Commands")
    for i, (text, pv, value, confirm) in enumerate(BUTTONS):
        assert pv in AssonantIOC.COMMANDS and pv in specs
        button = widget.ActionButton(
            f"button {text}", text, f"$(P){pv}", X0 + (i % 3) * 225, y + (i // 3) * 34, 215, 30
        )
        button.action_write_pv(f"$(P){pv}", value, text)
        if confirm:
            button.confirmation_dialog(confirm)
        button.tool_tip(specs[pv].doc or pv)
        panel.add_widget(button)
    y += 2 * 34 + 4

    section("Settings")
    for pv in AssonantIOC.SETTINGS:
        spec = specs[pv]
        label(pv)
        entry = widget.TextEntry(f"entry {pv}", f"$(P){pv}", X0 + LABEL_W, y, VALUE_W, ROW - 4)
        if is_long_string(spec):
            entry.format("string")
        entry.tool_tip(spec.doc or pv)
        panel.add_widget(entry)
        y += ROW

    for title_text, names in (("Status", AssonantIOC.STATUS), ("Health", AssonantIOC.HEALTH)):
        section(title_text)
        for pv in names:
            spec = specs[pv]
            label(pv)
            x = X0 + LABEL_W
            if is_enum(spec):
                strings = spec.cls_kwargs.get("enum_strings", [])
                if len(strings) == 2:
                    led = widget.LED(f"led {pv}", f"$(P){pv}", x, y, ROW - 6, ROW - 6)
                    led.off_color(255, 0, 0)
                    led.on_color(0, 200, 0)
                else:
                    led = widget.LEDMultiState(f"led {pv}", f"$(P){pv}", x, y, ROW - 6, ROW - 6)
                    for value, (name, rgb) in enumerate(zip(strings, STATE_COLOURS, strict=False)):
                        led.state(value, name, *rgb)
                led.tool_tip(spec.doc or pv)
                panel.add_widget(led)
                x += ROW
            text = widget.TextUpdate(
                f"text {pv}", f"$(P){pv}", x, y, VALUE_W - (x - X0 - LABEL_W), ROW - 4
            )
            if is_long_string(spec):
                text.format("string")
            text.tool_tip(spec.doc or pv)
            panel.add_widget(text)
            y += ROW
    panel.height(y + 10)
    panel.width(X0 * 2 + LABEL_W + VALUE_W)
    return panel


def render_panel() -> str:
    """The panel's XML text."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "panel.bob"
        build_panel().write_screen(str(path))
        return path.read_text(encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = Parser(prog="assonant-ioc panel", description=__doc__)
    parser.add_argument("-o", "--output", default=str(DEFAULT_PANEL), help="the .bob file")
    args = parser.parse_args(argv)
    try:
        import phoebusgen  # noqa: F401 - only to say what is missing
    except ImportError:
        fix = "pip install 'assonant-ioc[panel]'"
        sys.stderr.write(f"assonant-ioc panel: needs phoebusgen: {fix}\n")
        raise SystemExit(2) from None
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_panel(), encoding="utf-8")
