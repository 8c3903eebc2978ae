"""Load a beamline config (YAML, or the reference implementation's CSV PV map).

Everything is checked once; a bad file raises one :class:`ConfigError` that
lists every bad entry with its line.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from assonant_ioc.config.appdef import missing_for_definition
from assonant_ioc.config.spec import (
    ALL_MOMENTS,
    COMPRESSION_FILTERS,
    DEFINITIONS,
    SNAPSHOT_MOMENTS,
    STAMPS,
    AlarmLimits,
    AxisSpec,
    BeamlineConfig,
    ChannelSpec,
    ComponentSpec,
    CompressionSpec,
    ConstantSpec,
    FramesSpec,
    KafkaSettings,
    check_file_name_template,
)
from assonant_ioc.config.units import unit_problem
from assonant_ioc.errors import ConfigError
from assonant_ioc.events.security import ENV as SECURITY_ENV
from assonant_ioc.events.security import security
from assonant_ioc.model.components import ComponentClass, Moment, TransformationType
from assonant_ioc.nexus.provenance import PROVENANCE, RESERVED
from assonant_ioc.trust import proposal_refusal

LINE = "__line__"
KEY_LINES = "__key_lines__"
DEFAULT_FILE_NAME = "{beamline}_{experiment_id}_{counter:05d}.nxs"
_MACRO = re.compile(r"\$\((\w+)\)|\$\{(\w+)\}")
#: NeXus names: letters, digits and underscores (groups, fields)
_NEXUS_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_AXIS_VECTORS = {"x": (1.0, 0.0, 0.0), "y": (0.0, 1.0, 0.0), "z": (0.0, 0.0, 1.0)}

#: The reference implementation's acquisition types and the moments they mean.
CSV_ACQUISITION_TYPES: dict[str, frozenset[Moment]] = {
    "snapshot_at_start": frozenset({Moment.PRE}),
    "snapshot_at_end": frozenset({Moment.POST}),
    "snapshot": SNAPSHOT_MOMENTS,
    "vary": SNAPSHOT_MOMENTS,
    "scan": frozenset({Moment.DURING}),
}
CSV_HEADERS = (
    "Name",
    "Subcomponent of",
    "Class",
    "Field Name",
    "Unit of Measurement",
    "Data Type",
    "Acquisition Type",
    "PV Name",
    "NeXus Class",
    "NeXus Field Name",
    "Transformation Type",
)


class _LineLoader(yaml.SafeLoader):
    """A SafeLoader that records each mapping's line number under ``__line__``."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        mapping = super().construct_mapping(node, deep=deep)
        mapping[LINE] = node.start_mark.line + 1
        mapping[KEY_LINES] = {
            k.value: k.start_mark.line + 1 for k, _ in node.value if isinstance(k, yaml.ScalarNode)
        }
        return mapping


class _Problems:
    def __init__(self) -> None:
        self.items: list[tuple[int, str]] = []

    def add(self, line: int, msg: str) -> None:
        self.items.append((line, msg))


#: The example configs shipped in the package (``--config sim``, ``--config mogno``...).
CONFIGS_DIR = Path(__file__).resolve().parents[1] / "configs"


def packaged_configs() -> list[Path]:
    """The configs that ship with the package, by name."""
    return sorted(p for p in CONFIGS_DIR.iterdir() if p.suffix in (".yaml", ".csv"))


def resolve_config(path: str | Path) -> Path:
    """``path`` as given when it exists, else the packaged config of that name
    (``sim``, ``mogno.yaml``...)."""
    given = Path(path)
    if given.exists() or given.parent != Path("."):
        return given
    for candidate in (given.name, f"{given.name}.yaml", f"{given.name}.csv"):
        if (CONFIGS_DIR / candidate).is_file():
            return CONFIGS_DIR / candidate
    return given


def load_config(
    path: str | Path,
    macros: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> BeamlineConfig:
    """Load and validate a ``.yaml``/``.yml`` config or a ``.csv`` PV map.

    ``macros`` (``$(NAME)`` in PV names) override the file's own ``macros``;
    ``overrides`` replace top-level settings (``prefix``, ``data_dir``...).
    """
    path = resolve_config(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        names = ", ".join(p.stem for p in packaged_configs())
        raise ConfigError(
            str(path), [(0, f"cannot read config: {err} (shipped configs: {names})")]
        ) from err
    if path.suffix.lower() == ".csv":
        doc: dict[str, Any] = {"pv_map": str(path.resolve()), LINE: 1}
    else:
        try:
            loaded = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            line = mark.line + 1 if mark is not None else 0
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            context = getattr(err, "context", None)
            where = f" ({context})" if context else ""
            column = f", column {mark.column + 1}" if mark is not None else ""
            raise ConfigError(
                str(path), [(line, f"not valid YAML{column}: {problem}{where}")]
            ) from err
        if not isinstance(loaded, dict):
            raise ConfigError(str(path), [(1, "a config must be a mapping of settings")])
        doc = loaded
    for key, value in (overrides or {}).items():
        if value is not None:
            doc[key] = value
    return _build(doc, path, dict(macros or {}))


_TOP_KEYS = {
    KEY_LINES,
    "beamline",
    "prefix",
    "macros",
    "data_dir",
    "file_name",
    "kafka",
    "instrument",
    "sample",
    "pv_map",
    "definition",
    "compression",
    "validate",
    "state_dir",
    "journal_flush_s",
    "staging_every_s",
    "journal_max_pending",
    "connect_timeout",
    "data_root",
    "detector_dirs",
    "proposal",
    "access_security",
    "alarms",
    LINE,
}


def _build(doc: dict[str, Any], path: Path, cli_macros: dict[str, str]) -> BeamlineConfig:
    p = _Problems()
    for key in doc:
        if key not in _TOP_KEYS:
            known = ", ".join(sorted(_TOP_KEYS - {LINE, KEY_LINES}))
            p.add(_line(doc, key), f"unknown setting {key!r} (known: {known})")
    macros: dict[str, str] = {}
    raw_macros = doc.get("macros") or {}
    if not isinstance(raw_macros, dict):
        p.add(_line(doc), "'macros' must be a mapping NAME: value")
    else:
        macros = {str(k): str(v) for k, v in raw_macros.items() if k not in (LINE, KEY_LINES)}
    macros.update(cli_macros)

    beamline = doc.get("beamline")
    instrument: list[ComponentSpec] = []
    sample: ComponentSpec | None = None
    if doc.get("pv_map"):
        csv_path = Path(str(doc["pv_map"]))
        if not csv_path.is_absolute():
            csv_path = path.parent / csv_path
        from assonant_ioc.config.pv_map import load_pv_map  # it uses this module's parsers

        title, csv_instrument, csv_sample = load_pv_map(csv_path, macros, p)
        beamline = beamline or title
        instrument += csv_instrument
        sample = csv_sample
    raw_instrument = doc.get("instrument") or []
    if not isinstance(raw_instrument, list):
        p.add(_line(doc), "'instrument' must be a list of components")
    else:
        for raw in raw_instrument:
            comp = _component(raw, macros, p, _line(doc))
            if comp is not None:
                _add_or_extend(instrument, comp)
    if doc.get("sample") is not None:
        raw_sample = doc["sample"]
        if isinstance(raw_sample, dict):
            raw_sample.setdefault("class", "Sample")
        comp = _component(raw_sample, macros, p, _line(doc))
        if comp is not None:
            if sample is not None and sample.name.lower() != comp.name.lower():
                p.add(_line(raw_sample), "sample given both in the YAML and in the PV map")
            holder = [sample] if sample is not None else []
            _add_or_extend(holder, comp)
            sample = holder[0]
    _check_unique([c.name.lower() for c in instrument], "component", p, _line(doc))

    if not beamline or not isinstance(beamline, str):
        p.add(_line(doc), "'beamline' (the beamline's name) is required")
        beamline = ""
    prefix = str(doc.get("prefix") or f"{beamline}:ASSONANT:")
    data_dir = str(doc.get("data_dir") or "./data")
    file_name = str(doc.get("file_name") or DEFAULT_FILE_NAME)
    why = check_file_name_template(file_name)
    if why:
        p.add(_line(doc, "file_name"), why)
    kafka = _kafka(doc.get("kafka"), p, _line(doc))
    compression = _compression(doc.get("compression"), p, _line(doc, "compression"))
    if not instrument and sample is None and not doc.get("pv_map"):  # a map says its own
        p.add(_line(doc), "no components: give 'instrument', 'sample' or 'pv_map'")
    definition = ""
    if doc.get("definition"):
        wanted = str(doc["definition"])
        definition = next((d for d in DEFINITIONS if d.lower() == wanted.lower()), "")
        if not definition:
            p.add(
                _line(doc, "definition"),
                f"unknown application definition {wanted!r} (known: {', '.join(DEFINITIONS)})",
            )
        else:
            for line, msg in missing_for_definition(definition, instrument, sample):
                p.add(line or _line(doc, "definition"), msg)
    if definition == "NXtomo" and not doc.get("file_name"):
        file_name = file_name.removesuffix(".nxs") + ".nx"  # the extension nabu takes
    timing: dict[str, float] = {}
    for key, default in (
        ("journal_flush_s", 1.0),
        ("staging_every_s", 2.0),
        ("connect_timeout", 5.0),
    ):
        raw_t = doc.get(key, default)
        if isinstance(raw_t, bool) or not isinstance(raw_t, (int, float)) or not 0 < raw_t <= 600:
            p.add(_line(doc, key), f"{key} must be a number of seconds in (0, 600], not {raw_t!r}")
        else:
            timing[key] = float(raw_t)
    max_pending = doc.get("journal_max_pending", 2_000_000)
    if isinstance(max_pending, bool) or not isinstance(max_pending, int) or max_pending < 1:
        p.add(
            _line(doc, "journal_max_pending"),
            f"journal_max_pending must be a whole number of readings >= 1, not {max_pending!r}",
        )
        max_pending = 1
    raw_roots = doc.get("data_root") or []
    roots = [raw_roots] if isinstance(raw_roots, str) else raw_roots
    if not isinstance(roots, list) or not all(
        isinstance(r, str) and os.path.isabs(r) for r in roots
    ):
        p.add(_line(doc, "data_root"), "data_root must be an absolute directory or a list of them")
        roots = []
    raw_dirs = doc.get("detector_dirs") or []
    detector_dirs = [raw_dirs] if isinstance(raw_dirs, str) else raw_dirs
    if not isinstance(detector_dirs, list) or not all(
        isinstance(d, str) and os.path.isabs(d) for d in detector_dirs
    ):
        p.add(
            _line(doc, "detector_dirs"),
            "detector_dirs must be an absolute directory or a list of them",
        )
        detector_dirs = []
    proposal = doc.get("proposal") or ""
    proposal = str(proposal) if isinstance(proposal, (str, int)) else proposal
    why = proposal_refusal("proposal", proposal)
    if why:
        p.add(_line(doc, "proposal"), why)
        proposal = ""
    acf = str(doc.get("access_security") or "")
    if acf and not os.path.isabs(acf):
        acf = str(path.parent / acf)
    if acf and not os.path.isfile(acf):
        p.add(_line(doc, "access_security"), f"access_security: no file {acf!r}")
    alarms = _alarms(doc.get("alarms"), p, _line(doc, "alarms"))
    if p.items:
        raise ConfigError(str(path), p.items)
    return BeamlineConfig(
        beamline=beamline,
        prefix=prefix,
        data_dir=data_dir,
        file_name=file_name,
        kafka=kafka,
        instrument=tuple(instrument),
        sample=sample,
        source=str(path),
        definition=definition,
        compression=compression,
        validate=bool(doc.get("validate", True)),
        state_dir=str(doc.get("state_dir") or ""),
        journal_flush_s=timing["journal_flush_s"],
        staging_every_s=timing["staging_every_s"],
        journal_max_pending=max_pending,
        connect_timeout=timing["connect_timeout"],
        data_root=tuple(roots),
        detector_dirs=tuple(detector_dirs),
        proposal=proposal,
        access_security=acf,
        alarms=alarms,
    )


def _alarms(raw: Any, p: _Problems, line: int) -> AlarmLimits:
    """``alarms: {loop_lag_ms: [HIGH, HIHI], mem_used_mb: [...], events_pending: [...]}``."""
    defaults = AlarmLimits()
    if raw is None:
        return defaults
    if not isinstance(raw, dict):
        p.add(line, "alarms must be a mapping (loop_lag_ms, mem_used_mb, events_pending)")
        return defaults
    values: dict[str, tuple[float, float]] = {}
    for key in sorted(set(raw) - {LINE, KEY_LINES}):
        if not hasattr(defaults, key):
            p.add(_line(raw, key) or line, f"alarms: unknown key {key!r}")
            continue
        pair = raw[key]
        ok = (
            isinstance(pair, list)
            and len(pair) == 2
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in pair)
            and 0 < pair[0] < pair[1]
        )
        if not ok:
            p.add(
                _line(raw, key) or line,
                f"alarms: {key} must be [HIGH, HIHI] with 0 < HIGH < HIHI, not {pair!r}",
            )
            continue
        values[key] = (float(pair[0]), float(pair[1]))
    return AlarmLimits(**{**dataclasses.asdict(defaults), **values})


def _add_or_extend(components: list[ComponentSpec], comp: ComponentSpec) -> None:
    """Add ``comp``; a YAML component named like one of the PV map's extends it (constants,
    axes, subcomponents and frames the CSV format cannot say)."""
    for i, have in enumerate(components):
        if nexus_name(have.name).lower() == nexus_name(comp.name).lower():
            components[i] = replace(
                have,
                channels=have.channels + comp.channels,
                constants=have.constants + comp.constants,
                subcomponents=have.subcomponents + comp.subcomponents,
                frames=comp.frames or have.frames,
            )
            return
    components.append(comp)


def _compression(raw: Any, p: _Problems, line: int) -> CompressionSpec:
    if raw is None:
        return CompressionSpec()
    if isinstance(raw, str):
        raw = {"filter": raw}
    if not isinstance(raw, dict):
        p.add(line, "'compression' must be a filter name or {filter, level, min_points}")
        return CompressionSpec()
    for key in sorted(set(raw) - {"filter", "level", "min_points", LINE, KEY_LINES}):
        p.add(_line(raw, key), f"unknown compression setting {key!r}")
    name = str(raw.get("filter", "none")).lower()
    if name not in COMPRESSION_FILTERS:
        p.add(
            _line(raw, "filter") or line,
            f"unknown compression filter {name!r} (known: {', '.join(COMPRESSION_FILTERS)})",
        )
        name = "none"
    level, min_points = raw.get("level", 0), raw.get("min_points", 1000)
    for key, value in (("level", level), ("min_points", min_points)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            p.add(_line(raw, key) or line, f"compression {key} must be a whole number >= 0")
    if name == "gzip" and isinstance(level, int) and level > 9:
        p.add(_line(raw, "level") or line, "gzip level must be 0 to 9")
    return CompressionSpec(
        name,
        level if isinstance(level, int) else 0,
        min_points if isinstance(min_points, int) else 1000,
    )


def nexus_name(text: str) -> str:
    """A PV map's component name as a NeXus name: ``PILATUS 2M`` -> ``PILATUS_2M``."""
    name = re.sub(r"[^A-Za-z0-9_]+", "_", text.strip()).strip("_")
    return f"_{name}" if name[:1].isdigit() else name


def _line(node: Any, key: str | None = None) -> int:
    """The line of a mapping, or of one of its keys when the file recorded it."""
    if not isinstance(node, dict):
        return 0
    if key is not None and key in node.get(KEY_LINES, {}):
        return int(node[KEY_LINES][key])
    return int(node.get(LINE, 0))


def _check_unique(names: list[str], what: str, p: _Problems, line: int) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            p.add(line, f"duplicate {what} name {name!r}")
        seen.add(name)


def _kafka(raw: Any, p: _Problems, line: int) -> KafkaSettings:
    if raw is None:
        return KafkaSettings()
    if not isinstance(raw, dict):
        p.add(line, "'kafka' must be a mapping with bootstrap, topic, enabled")
        return KafkaSettings()
    unknown = set(raw) - {
        "bootstrap",
        "topic",
        "enabled",
        "idempotent",
        "security",
        LINE,
        KEY_LINES,
    }
    for key in sorted(unknown):
        p.add(_line(raw, key), f"unknown kafka setting {key!r}")
    topic = str(raw.get("topic") or "assonant.files")
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,249}", topic):
        p.add(_line(raw, "topic"), f"kafka topic {topic!r} is not a legal topic name")
    bootstrap = raw.get("bootstrap")
    secure = raw.get("security") or {}
    if not isinstance(secure, dict):
        p.add(_line(raw, "security"), "kafka security must be a mapping (protocol, sasl_...)")
        secure = {}
    secure = {k: str(v) for k, v in secure.items() if k not in (LINE, KEY_LINES)}
    known = set(SECURITY_ENV)
    for key in sorted(set(secure) - known):
        p.add(_line(raw, "security"), f"unknown kafka security setting {key!r}")
    secure = {k: v for k, v in secure.items() if k in known}
    for problem in security(secure).problems():  # with the environment, as at the start
        p.add(_line(raw, "security"), f"kafka security: {problem}")
    return KafkaSettings(
        security=secure,
        bootstrap=str(bootstrap) if bootstrap else None,
        topic=topic,
        enabled=bool(raw.get("enabled", True)),
        idempotent=bool(raw.get("idempotent", True)),
    )


def _expand(text: str, macros: Mapping[str, str], p: _Problems, line: int) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in macros:
            p.add(line, f"undefined macro {name!r} in {text!r}")
            return m.group(0)
        return macros[name]

    return _MACRO.sub(sub, text)


def _moments(raw: Any, p: _Problems, line: int) -> frozenset[Moment]:
    if raw is None:
        return SNAPSHOT_MOMENTS
    items = [raw] if isinstance(raw, str) else raw
    out: set[Moment] = set()
    if not isinstance(items, list) or not items:
        p.add(line, f"moments must be a list of pre/during/post, not {raw!r}")
        return SNAPSHOT_MOMENTS
    for item in items:
        key = str(item).lower()
        if key in CSV_ACQUISITION_TYPES:
            out |= CSV_ACQUISITION_TYPES[key]
            continue
        try:
            out.add(Moment(key))
        except ValueError:
            p.add(line, f"unknown moment {item!r} (use pre, during, post)")
    return frozenset(out) or SNAPSHOT_MOMENTS


def _vector(raw: Any, p: _Problems, line: int, what: str) -> tuple[float, float, float] | None:
    if raw is None:
        return None
    if (
        not isinstance(raw, list)
        or len(raw) != 3
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw)
    ):
        p.add(line, f"{what} must be a list of three numbers, not {raw!r}")
        return None
    return (float(raw[0]), float(raw[1]), float(raw[2]))


_CHANNEL_KEYS = {
    "pv",
    "value",
    "units",
    "moments",
    "type",
    "vector",
    "offset",
    "depends_on",
    LINE,
    KEY_LINES,
}


def _channel(
    name: str, raw: Any, macros: Mapping[str, str], p: _Problems, parent_line: int, is_axis: bool
) -> ChannelSpec | None:
    if isinstance(raw, str):
        raw = {"pv": raw, LINE: parent_line}
    if not isinstance(raw, dict):
        p.add(parent_line, f"{name!r}: expected a mapping with at least 'pv'")
        return None
    line = _line(raw) or parent_line
    if not _NEXUS_NAME.fullmatch(name):
        p.add(line, f"{name!r}: not a NeXus name; use letters, digits and _")
    for key in sorted(set(raw) - _CHANNEL_KEYS):
        p.add(_line(raw, key) or line, f"{name!r}: unknown key {key!r}")
    pv = raw.get("pv")
    value = raw.get("value")
    if isinstance(value, list) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
    ):
        value = tuple(float(v) for v in value)
    if value is not None and (pv or not is_axis):
        p.add(line, f"{name!r}: 'value' fixes an axis given by the config: no 'pv' with it")
    elif value is not None and not isinstance(value, (int, float, tuple)):
        p.add(line, f"{name!r}: 'value' must be a number or a list of numbers")
    elif value is None and (not pv or not isinstance(pv, str)):
        p.add(line, f"{name!r}: 'pv' (the PV name) is required")
    pv = _expand(pv if isinstance(pv, str) else "", macros, p, line)
    if any(c.isspace() for c in pv):
        p.add(line, f"{name!r}: PV name {pv!r} contains whitespace")
    units = raw.get("units", "")
    if not isinstance(units, str):
        p.add(line, f"{name!r}: units must be a string")
        units = str(units)
    elif why := unit_problem(units):
        p.add(_line(raw, "units") or line, f"{name!r}: {why}")
    axis: AxisSpec | None = None
    if is_axis:
        ttype_raw = str(raw.get("type", "translation")).lower()
        try:
            ttype = TransformationType(ttype_raw)
        except ValueError:
            p.add(line, f"{name!r}: type must be translation or rotation, not {ttype_raw!r}")
            ttype = TransformationType.TRANSLATION
        vector = _vector(raw.get("vector"), p, line, f"{name!r}: vector")
        if vector is None:
            vector = _AXIS_VECTORS.get(name.lower()[-1:], (0.0, 0.0, 1.0))
        if vector == (0.0, 0.0, 0.0):
            p.add(line, f"{name!r}: vector must not be zero")
        offset = _vector(raw.get("offset"), p, line, f"{name!r}: offset")
        axis = AxisSpec(ttype, vector, offset, str(raw.get("depends_on", "")))
    elif {"type", "vector", "offset", "depends_on"} & set(raw):
        p.add(line, f"{name!r}: type/vector/offset/depends_on belong to axes, not fields")
    return ChannelSpec(
        name=name,
        pv=pv,
        units=units,
        moments=ALL_MOMENTS if value is not None else _moments(raw.get("moments"), p, line),
        line=line,
        axis=axis,
        value=value,
    )


def _chain_axes(channels: list[ChannelSpec], comp: str, p: _Problems) -> list[ChannelSpec]:
    """Fill unset ``depends_on``: each axis depends on the next one listed, the last on ``.``."""
    axes = [c for c in channels if c.axis is not None]
    names = {c.name for c in axes}
    out: list[ChannelSpec] = []
    for i, ch in enumerate(channels):
        if ch.axis is None:
            out.append(ch)
            continue
        dep = ch.axis.depends_on
        if not dep:
            pos = axes.index(ch)
            dep = axes[pos + 1].name if pos + 1 < len(axes) else "."
        elif dep != "." and dep not in names:
            p.add(ch.line, f"{comp}/{ch.name}: depends_on {dep!r} is not an axis of {comp!r}")
        axis = AxisSpec(ch.axis.transformation_type, ch.axis.vector, ch.axis.offset, dep)
        out.append(replace(ch, axis=axis))
        del i
    # a cycle would make the chain endless
    deps = {c.name: c.axis.depends_on for c in out if c.axis is not None}
    for start in deps:
        seen, cur = set(), start
        while cur in deps:
            if cur in seen:
                p.add(0, f"{comp}: depends_on chain of axis {start!r} has a cycle")
                break
            seen.add(cur)
            cur = deps[cur]
    return out


_COMPONENT_KEYS = {
    "name",
    "class",
    "fields",
    "axes",
    "constants",
    "subcomponents",
    "frames",
    LINE,
    KEY_LINES,
}


def _component(
    raw: Any, macros: Mapping[str, str], p: _Problems, parent_line: int
) -> ComponentSpec | None:
    if not isinstance(raw, dict):
        p.add(parent_line, f"a component must be a mapping, not {raw!r}")
        return None
    line = _line(raw)
    name = raw.get("name")
    if not name or not isinstance(name, str):
        p.add(line, "component without a 'name'")
        name = "?"
    for key in sorted(set(raw) - _COMPONENT_KEYS):
        p.add(_line(raw, key), f"component {name!r}: unknown key {key!r}")
    if name != "?" and not _NEXUS_NAME.fullmatch(name):
        p.add(line, f"component {name!r}: not a NeXus name; use letters, digits and _")
    try:
        cls = ComponentClass.parse(str(raw.get("class", "")))
    except ValueError:
        known = ", ".join(c.value for c in ComponentClass)
        p.add(
            _line(raw, "class"),
            f"component {name!r}: unknown class {raw.get('class')!r} (known: {known})",
        )
        cls = ComponentClass.COLLECTION
    channels: list[ChannelSpec] = []
    for key, is_axis in (("fields", False), ("axes", True)):
        section = raw.get(key) or {}
        if not isinstance(section, dict):
            p.add(line, f"component {name!r}: {key!r} must be a mapping name: {{pv: ...}}")
            continue
        for fname, fraw in section.items():
            if fname in (LINE, KEY_LINES):
                continue
            ch = _channel(str(fname), fraw, macros, p, _line(section) or line, is_axis)
            if ch is not None:
                channels.append(ch)
    _check_unique([c.name for c in channels], f"field/axis in {name!r}", p, line)
    for taken in sorted({name, *(c.name for c in channels)} & (RESERVED | {PROVENANCE})):
        p.add(line, f"component {name!r}: {taken!r} is a name the file's provenance uses")
    constants: list[ConstantSpec] = []
    raw_constants = raw.get("constants") or {}
    if not isinstance(raw_constants, dict):
        p.add(line, f"component {name!r}: 'constants' must be a mapping")
        raw_constants = {}
    for cname, craw in raw_constants.items():
        if cname in (LINE, KEY_LINES):
            continue
        cline = _line(craw) or _line(raw_constants) or line
        value = craw.get("value") if isinstance(craw, dict) else craw
        units = str(craw.get("units", "")) if isinstance(craw, dict) else ""
        if why := unit_problem(units):
            p.add(cline, f"{cname!r}: {why}")
        if isinstance(value, list) and all(isinstance(v, (int, float)) for v in value):
            # whole numbers stay integers (NX_INT fields such as data_size)
            whole = all(isinstance(v, int) for v in value)
            value = tuple(int(v) if whole else float(v) for v in value)
        if not isinstance(value, (bool, int, float, str, tuple)):
            p.add(cline, f"{name}/{cname}: constant must be a number, string or list of numbers")
            continue
        constants.append(ConstantSpec(str(cname), value, units, cline))
    subs: list[ComponentSpec] = []
    raw_subs = raw.get("subcomponents") or []
    if not isinstance(raw_subs, list):
        p.add(line, f"component {name!r}: 'subcomponents' must be a list")
        raw_subs = []
    for sraw in raw_subs:
        sub = _component(sraw, macros, p, line)
        if sub is not None:
            subs.append(sub)
    return ComponentSpec(
        name=name,
        component_class=cls,
        channels=tuple(_chain_axes(channels, name, p)),
        constants=tuple(constants),
        subcomponents=tuple(subs),
        line=line,
        frames=_frames(raw.get("frames"), name, macros, p, _line(raw, "frames") or line),
    )


def _frames(
    raw: Any, comp: str, macros: Mapping[str, str], p: _Problems, line: int
) -> FramesSpec | None:
    """``frames: {file_pv: ..., dataset: /entry/data/data}``: the detector's own files."""
    if raw is None:
        return None
    if isinstance(raw, str):
        raw = {"file_pv": raw}
    if isinstance(raw, dict) and isinstance(raw.get("plugin"), str):  # areaDetector's names
        plugin = raw["plugin"]
        raw = {
            "file_pv": f"{plugin}FullFileName_RBV",
            "capture_pv": f"{plugin}Capture_RBV",
            "captured_pv": f"{plugin}NumCaptured_RBV",
            **{k: v for k, v in raw.items() if k != "plugin"},
        }
    if not isinstance(raw, dict) or not (
        isinstance(raw.get("file_pv"), str) or isinstance(raw.get("data_key"), str)
    ):
        p.add(
            line,
            f"component {comp!r}: frames needs 'file_pv' (e.g. HDF1:FullFileName_RBV), "
            "'plugin' (e.g. $(BL)det:HDF1:) or, for Bluesky runs only, 'data_key'",
        )
        return None
    known = {"file_pv", "dataset", "stamp", "capture_pv", "captured_pv", "timeout", "data_key"}
    for key in sorted(set(raw) - known - {LINE, KEY_LINES}):
        p.add(_line(raw, key) or line, f"component {comp!r}: frames: unknown key {key!r}")
    timeout = raw.get("timeout", 30.0)
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not 0 < timeout <= 3600
    ):
        p.add(
            _line(raw, "timeout") or line,
            f"component {comp!r}: frames timeout must be seconds in (0, 3600], not {timeout!r}",
        )
        timeout = 30.0
    dataset = str(raw.get("dataset", "/entry/data/data"))
    if not dataset.startswith("/"):
        p.add(line, f"component {comp!r}: frames dataset {dataset!r} must be an absolute path")
    stamp = str(raw.get("stamp", "end"))
    if stamp not in STAMPS:
        p.add(
            _line(raw, "stamp") or line,
            f"component {comp!r}: frames stamp {stamp!r} is not one of {', '.join(STAMPS)}",
        )
    return FramesSpec(
        _expand(str(raw.get("file_pv") or ""), macros, p, line),
        dataset,
        line,
        stamp,
        _expand(str(raw.get("capture_pv") or ""), macros, p, line),
        _expand(str(raw.get("captured_pv") or ""), macros, p, line),
        float(timeout),
        str(raw.get("data_key") or ""),
    )
