"""Config loading: YAML and the reference CSV PV map; every bad entry reported with its line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from assonant_ioc.config import load_config
from assonant_ioc.errors import ConfigError
from assonant_ioc.model.components import ComponentClass, Moment, TransformationType

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize(
    ("name", "beamline", "definition", "n_pvs"),
    [
        ("sim.yaml", "SIM", "", 15),
        ("sim_tomo.yaml", "SIM", "NXtomo", 18),
        ("sim_mx.yaml", "SIM", "NXmx", 12),
        ("sim_saxs.yaml", "SIM", "NXsas", 14),
        ("sim_xrf.yaml", "SIM", "NXfluo", 11),
        ("sim_xas.yaml", "SIM", "NXxas", 7),
        ("mogno.yaml", "MOGNO", "NXtomo", 19),
        ("manaca.yaml", "MANACA", "NXmx", 15),
        ("manaca_pv_map.csv", "MANACA", "", 12),
        ("sapucaia.yaml", "SAPUCAIA", "NXsas", 17),
        ("carnauba.yaml", "CARNAUBA", "NXfluo", 11),
        ("quati.yaml", "QUATI", "NXxas", 7),
        ("sape.yaml", "SAPE", "NXarpes", 16),
    ],
)
def test_shipped_configs_load(name: str, beamline: str, definition: str, n_pvs: int) -> None:
    """Each shipped config, as its beamline, definition and PVs (one per field or axis)."""
    config = load_config(CONFIGS / name)
    assert (config.beamline, config.definition, len(config.pvs())) == (
        beamline,
        definition,
        n_pvs,
    )
    assert config.sample is not None and config.sample.channels


def test_sim_config_macros_and_axes() -> None:
    config = load_config(CONFIGS / "sim.yaml", macros={"BL": "XYZ:"})
    assert sorted(config.pvs()) == [
        f"XYZ:{pv}"
        for pv in (
            "det:Acquire", "det:AcquireTime", "det:ArrayCounter_RBV", "det:Temperature",
            "mono:energy:RBV", "mono:wavelength", "ring:current", "s1:hcen:RBV", "s1:hgap:RBV",
            "s1:vcen:RBV", "s1:vgap:RBV", "smp:rx:RBV", "smp:x:RBV", "smp:y:RBV", "smp:z:RBV",
        )
    ]  # fmt: skip
    assert (config.beamline, config.prefix, config.kafka.topic) == (
        "SIM",
        "SIM:ASSONANT:",
        "assonant.files",
    )
    assert config.file_name == "{beamline}_{experiment_id}_{counter:05d}.nxs"
    assert config.sample is not None
    axes = {ch.name: ch.axis for ch in config.sample.channels}
    assert axes["rx"] is not None and axes["rx"].depends_on == "x"
    assert axes["rx"].transformation_type is TransformationType.ROTATION
    assert axes["z"] is not None and axes["z"].depends_on == "."
    assert "XYZ:smp:x:RBV" in config.pvs(Moment.DURING)
    assert "XYZ:smp:y:RBV" not in config.pvs(Moment.DURING)


def test_reference_csv_map_is_read_as_it_is() -> None:
    config = load_config(CONFIGS / "manaca_pv_map.csv")
    assert config.beamline == "MANACA"
    comps = {c.name: c for c in config.components()}
    assert comps["Crystal_1"].component_class is ComponentClass.MONOCHROMATOR_CRYSTAL
    assert comps["Monochromator"].subcomponents[0].name == "Crystal_1"
    assert comps["Extra_Info"] in comps["PILATUS_2M"].subcomponents
    chans = {c.name: c for c in config.channels()}
    assert chans["temperature"].moments == {Moment.PRE}  # snapshot_at_start
    assert chans["frame_count"].moments == {Moment.DURING}  # scan
    assert chans["current"].moments == {Moment.PRE, Moment.POST}  # vary
    assert chans["Rx"].axis is not None
    assert chans["Rx"].axis.transformation_type is TransformationType.ROTATION
    assert chans["wavelength"].units == "angstrom"


BAD_YAML = """\
beamline: BAD
file_name: "{beamline}_{nope}.nxs"
kafka:
  topic: "bad topic!"
instrument:
  - name: mono
    class: Monochromator
    fields:
      energy: {pv: "$(UNDEFINED)mono:E", units: keV, moments: [pre, sometimes]}
      wavelength: {units: angstrom}
  - name: thing
    class: FluxCapacitor
  - name: stage
    class: Slit
    axes:
      x: {pv: "BL:x", type: wobble, vector: [1, 0]}
      y: {pv: "BL:y", depends_on: nowhere}
    colour: blue
"""


def test_bad_yaml_names_every_bad_entry_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD_YAML)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    text = str(err)
    expected = {
        2: "{nope}",
        4: "bad topic!",
        9: "UNDEFINED",
        10: "'pv' (the PV name) is required",
        12: "FluxCapacitor",
        16: "wobble",
        17: "nowhere",
        18: "colour",
    }
    lines = {line for line, _ in err.problems}
    for line, fragment in expected.items():
        assert any(ln == line and fragment in msg for ln, msg in err.problems), (line, text)
    assert "sometimes" in text and "three numbers" in text
    assert lines >= set(expected)
    assert text.startswith(f"{path}: {len(err.problems)} problem(s)")


def test_bad_csv_rows_are_named_by_line(tmp_path: Path) -> None:
    good = (CONFIGS / "manaca_pv_map.csv").read_text().splitlines()
    bad = [
        *good[:3],
        "Ghost,Nobody,Detector,x,mm,float,snapshot,BL:x,,,",
        "Thing,,Flux Capacitor,y,mm,float,snapshot,BL:y,,,",
        "Mono2,,Monochromator,z,mm,float,sometimes,BL:z,,,",
        "Mono3,,Monochromator,w,mm,float,snapshot,,,,",
    ]
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(bad) + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    by_line = dict(info.value.problems)
    assert "parent 'nobody'" in by_line[4]
    assert "Flux Capacitor" in by_line[5]
    assert "sometimes" in by_line[6]
    assert "'pv'" in by_line[7]


@pytest.mark.parametrize(
    ("name", "text", "said"),
    [
        (
            "short.csv",
            "title\nName,Class,PV Name\nm,Monochromator,BL:E\n",
            r"missing column.*Subcomponent of",
        ),
        ("broken.yaml", "beamline: [unclosed\n", "not valid YAML"),
        ("absent.yaml", None, "cannot read config"),
    ],
)
def test_a_file_not_read_says_why(tmp_path: Path, name: str, text: str | None, said: str) -> None:
    """Missing CSV columns listed, YAML that is not YAML, a file that is not there."""
    if text is not None:
        (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match=said):
        load_config(tmp_path / name)


def test_units_pint_does_not_know_are_refused_with_their_line(tmp_path: Path) -> None:
    text = (
        "beamline: BL\n"
        "instrument:\n"
        "  - name: mono\n"
        "    class: Monochromator\n"
        "    fields:\n"
        "      energy: {pv: 'BL:E', units: bogusunit}\n"
        "      wavelength: {pv: 'BL:W', units: angstrom}\n"
        "    constants:\n"
        "      d_spacing: {value: 3.1, units: furlongs_per_fortnight}\n"
    )
    path = tmp_path / "units.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    said = "\n".join(msg for _line, msg in info.value.problems)
    assert "'energy': unknown unit 'bogusunit'" in said
    assert "unknown unit 'furlongs_per_fortnight'" in said
    assert "angstrom" not in said  # a unit pint knows is fine
    lines = {line for line, msg in info.value.problems if "bogusunit" in msg}
    assert lines == {6}


def test_messages_speak_of_the_file_not_of_the_loader(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text("beamline: BL\nbogus_key: 1\nsample: {name: s, axes: {}}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    ((line, message),) = info.value.problems
    assert line == 2 and "unknown setting 'bogus_key'" in message
    assert "__" not in message  # no internal bookkeeping among the known settings
    broken = tmp_path / "broken.yaml"
    broken.write_text("beamline: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_config(broken)
    text = str(info.value)
    assert "not valid YAML, column" in text and "<unicode string>" not in text


def test_csv_problems_are_told_in_csv_terms(tmp_path: Path) -> None:
    header = (
        "Name,Subcomponent of,Class,Field Name,Unit of Measurement,Data Type,"
        "Acquisition Type,PV Name,NeXus Class,NeXus Field Name,Transformation Type"
    )
    rows = [
        "title",
        header,
        "Mono,,Monochromator,energy,keV,float,snapshot,BL:E,,,",
        "Mono,,Flux Capacitor,x,mm,float,snapshot,BL:x,,,",  # a typo in one row's class
        "Short,,Monochromator",  # a row cut short
    ]
    path = tmp_path / "map.csv"
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    by_line = dict(info.value.problems)
    assert set(by_line) == {4, 5}  # nothing said of the rows that are fine
    assert "unknown Class 'Flux Capacitor'" in by_line[4] and "given class" not in by_line[4]
    assert "3 of 11 columns" in by_line[5]
    columns = tmp_path / "columns.csv"
    columns.write_text("title\nName,Class,PV Name\nm,Monochromator,BL:E\n")
    with pytest.raises(ConfigError) as info:
        load_config(columns)
    ((line, message),) = info.value.problems  # the missing columns, and nothing in YAML terms
    assert line == 2 and "missing column(s)" in message


def test_alarm_limits_from_the_config_and_every_bad_one_named(tmp_path: Path) -> None:
    base = (Path(__file__).resolve().parents[2] / "configs" / "sim.yaml").read_text()
    good = tmp_path / "good.yaml"
    good.write_text(base + "alarms:\n  events_pending: [1, 5]\n")
    limits = load_config(good).alarms
    assert limits.events_pending == (1.0, 5.0) and limits.loop_lag_ms == (200.0, 2000.0)
    bad = tmp_path / "bad.yaml"
    bad.write_text(base + "alarms:\n  events_pending: [5, 1]\n  loop_lag: [1, 2]\n")
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    text = str(err.value)
    assert "events_pending must be [HIGH, HIHI] with 0 < HIGH < HIHI, not [5, 1]" in text
    assert "alarms: unknown key 'loop_lag'" in text


def test_the_idempotent_producer_is_on_unless_the_config_turns_it_off(tmp_path: Path) -> None:
    configs = Path(__file__).resolve().parents[2] / "configs"
    base = (configs / "mogno.yaml").read_text()
    assert load_config(configs / "mogno.yaml").kafka.idempotent is True  # a real Kafka
    assert load_config(configs / "sim.yaml").kafka.idempotent is False  # the local broker
    bad = tmp_path / "bad.yaml"
    bad.write_text(base.replace("kafka:\n", "kafka:\n  idempotence: false\n", 1))
    with pytest.raises(ConfigError, match="unknown kafka setting 'idempotence'"):
        load_config(bad)


def test_each_channel_names_its_protocol_as_ophyd_async_does(tmp_path: Path) -> None:
    """``pva://NAME`` PVAccess, ``ca://NAME`` or a bare name Channel Access, the config's
    ``protocol:`` the default for bare names; a PVA PV keeps its ``pva://`` from then on."""
    text = (
        "beamline: T\n{protocol}instrument:\n  - name: m\n    class: Monochromator\n"
        "    fields:\n"
        '      energy: {{pv: "pva://T:E", units: keV}}\n'
        '      bragg: {{pv: "ca://T:B", units: deg}}\n'
        '      other: {{pv: "T:O"}}\n'
    )
    path = tmp_path / "p.yaml"
    for default, other in (
        ("", "T:O"),
        ("protocol: ca\n", "T:O"),
        ("protocol: pva\n", "pva://T:O"),
    ):
        path.write_text(text.format(protocol=default))
        assert load_config(path).pvs() == ["pva://T:E", "T:B", other]


def test_a_protocol_it_does_not_speak_is_named_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "beamline: T\nprotocol: xrootd\ninstrument:\n  - name: m\n    class: Monochromator\n"
        '    fields:\n      energy: {pv: "xyz://T:E"}\n      bragg: {pv: "pva://"}\n'
    )
    for said in (
        "line 2: protocol: 'xrootd' is not ca or pva",
        "line 7: m/energy: protocol 'xyz' of 'xyz://T:E' is not ca://, pva:// or kafka://",
        "line 8: m/bragg: 'pva://' names no PV after its protocol",
    ):
        with pytest.raises(ConfigError, match=re.escape(said)):
            load_config(path)


def test_a_pv_map_row_may_name_a_pva_pv(tmp_path: Path) -> None:
    text = (CONFIGS / "manaca_pv_map.csv").read_text()
    path = tmp_path / "map.csv"
    path.write_text(text.replace("MNC:A:DCM01:Energy_RBV", "pva://MNC:A:DCM01:Energy_RBV"))
    chans = {c.name: c for c in load_config(path).channels()}
    assert chans["energy"].pv == "pva://MNC:A:DCM01:Energy_RBV"
    assert chans["wavelength"].pv == "MNC:A:DCM01:Wavelength_RBV"
