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
from assonant_ioc.config.components import parse_component
from assonant_ioc.config.parse import (
    KEY_LINES,
    LINE,
    LineLoader,
    Problems,
    check_unique,
    line_of,
    nexus_name,
)
from assonant_ioc.config.protocols import PROTOCOLS, with_protocols
from assonant_ioc.config.pv_map import load_pv_map
from assonant_ioc.config.run_control import parse_forwarder, parse_record, parse_run_control
from assonant_ioc.config.spec import (
    COMPRESSION_FILTERS,
    DEFINITIONS,
    AlarmLimits,
    BeamlineConfig,
    ComponentSpec,
    CompressionSpec,
    KafkaSettings,
    check_file_name_template,
)
from assonant_ioc.errors import ConfigError
from assonant_ioc.events.security import ENV as SECURITY_ENV
from assonant_ioc.events.security import security
from assonant_ioc.trust import proposal_refusal

DEFAULT_FILE_NAME = "{beamline}_{experiment_id}_{counter:05d}.nxs"

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
            loaded = yaml.load(text, Loader=LineLoader)  # noqa: S506 - a SafeLoader subclass
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
    "run_control",
    "record",
    "forwarder",
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
    "protocol",
    "access_security",
    "alarms",
    LINE,
}


def _build(doc: dict[str, Any], path: Path, cli_macros: dict[str, str]) -> BeamlineConfig:
    p = Problems()
    for key in doc:
        if key not in _TOP_KEYS:
            known = ", ".join(sorted(_TOP_KEYS - {LINE, KEY_LINES}))
            p.add(line_of(doc, key), f"unknown setting {key!r} (known: {known})")
    macros: dict[str, str] = {}
    raw_macros = doc.get("macros") or {}
    if not isinstance(raw_macros, dict):
        p.add(line_of(doc), "'macros' must be a mapping NAME: value")
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

        title, csv_instrument, csv_sample = load_pv_map(csv_path, macros, p)
        beamline = beamline or title
        instrument += csv_instrument
        sample = csv_sample
    raw_instrument = doc.get("instrument") or []
    if not isinstance(raw_instrument, list):
        p.add(line_of(doc), "'instrument' must be a list of components")
    else:
        for raw in raw_instrument:
            comp = parse_component(raw, macros, p, line_of(doc))
            if comp is not None:
                _add_or_extend(instrument, comp)
    if doc.get("sample") is not None:
        raw_sample = doc["sample"]
        if isinstance(raw_sample, dict):
            raw_sample.setdefault("class", "Sample")
        comp = parse_component(raw_sample, macros, p, line_of(doc))
        if comp is not None:
            if sample is not None and sample.name.lower() != comp.name.lower():
                p.add(line_of(raw_sample), "sample given both in the YAML and in the PV map")
            holder = [sample] if sample is not None else []
            _add_or_extend(holder, comp)
            sample = holder[0]
    check_unique([c.name.lower() for c in instrument], "component", p, line_of(doc))
    protocol = str(doc.get("protocol") or "ca").lower()
    if protocol not in PROTOCOLS:
        p.add(line_of(doc, "protocol"), f"protocol: {protocol!r} is not ca or pva")
    instrument = [with_protocols(c, protocol, p) for c in instrument]
    sample = with_protocols(sample, protocol, p) if sample is not None else None

    if not beamline or not isinstance(beamline, str):
        p.add(line_of(doc), "'beamline' (the beamline's name) is required")
        beamline = ""
    prefix = str(doc.get("prefix") or f"{beamline}:ASSONANT:")
    data_dir = str(doc.get("data_dir") or "./data")
    file_name = str(doc.get("file_name") or DEFAULT_FILE_NAME)
    why = check_file_name_template(file_name)
    if why:
        p.add(line_of(doc, "file_name"), why)
    kafka = _kafka(doc.get("kafka"), p, line_of(doc))
    run_control = parse_run_control(doc.get("run_control"), p, line_of(doc, "run_control"))
    before_start = parse_record(doc.get("record"), p, line_of(doc, "record"))
    forwarder = parse_forwarder(doc.get("forwarder"), p, line_of(doc, "forwarder"))
    compression = _compression(doc.get("compression"), p, line_of(doc, "compression"))
    if not instrument and sample is None and not doc.get("pv_map"):  # a map says its own
        p.add(line_of(doc), "no components: give 'instrument', 'sample' or 'pv_map'")
    definition = ""
    if doc.get("definition"):
        wanted = str(doc["definition"])
        definition = next((d for d in DEFINITIONS if d.lower() == wanted.lower()), "")
        if not definition:
            p.add(
                line_of(doc, "definition"),
                f"unknown application definition {wanted!r} (known: {', '.join(DEFINITIONS)})",
            )
        else:
            for line, msg in missing_for_definition(definition, instrument, sample):
                p.add(line or line_of(doc, "definition"), msg)
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
            p.add(
                line_of(doc, key), f"{key} must be a number of seconds in (0, 600], not {raw_t!r}"
            )
        else:
            timing[key] = float(raw_t)
    max_pending = doc.get("journal_max_pending", 2_000_000)
    if isinstance(max_pending, bool) or not isinstance(max_pending, int) or max_pending < 1:
        p.add(
            line_of(doc, "journal_max_pending"),
            f"journal_max_pending must be a whole number of readings >= 1, not {max_pending!r}",
        )
        max_pending = 1
    raw_roots = doc.get("data_root") or []
    roots = [raw_roots] if isinstance(raw_roots, str) else raw_roots
    if not isinstance(roots, list) or not all(
        isinstance(r, str) and os.path.isabs(r) for r in roots
    ):
        p.add(
            line_of(doc, "data_root"), "data_root must be an absolute directory or a list of them"
        )
        roots = []
    raw_dirs = doc.get("detector_dirs") or []
    detector_dirs = [raw_dirs] if isinstance(raw_dirs, str) else raw_dirs
    if not isinstance(detector_dirs, list) or not all(
        isinstance(d, str) and os.path.isabs(d) for d in detector_dirs
    ):
        p.add(
            line_of(doc, "detector_dirs"),
            "detector_dirs must be an absolute directory or a list of them",
        )
        detector_dirs = []
    proposal = doc.get("proposal") or ""
    proposal = str(proposal) if isinstance(proposal, (str, int)) else proposal
    why = proposal_refusal("proposal", proposal)
    if why:
        p.add(line_of(doc, "proposal"), why)
        proposal = ""
    acf = str(doc.get("access_security") or "")
    if acf and not os.path.isabs(acf):
        acf = str(path.parent / acf)
    if acf and not os.path.isfile(acf):
        p.add(line_of(doc, "access_security"), f"access_security: no file {acf!r}")
    alarms = _alarms(doc.get("alarms"), p, line_of(doc, "alarms"))
    if p.items:
        raise ConfigError(str(path), p.items)
    return BeamlineConfig(
        beamline=beamline,
        prefix=prefix,
        data_dir=data_dir,
        file_name=file_name,
        kafka=kafka,
        run_control=run_control,
        forwarder_topics=forwarder,
        before_start_s=before_start[0],
        before_start_max_updates=before_start[1],
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


def _alarms(raw: Any, p: Problems, line: int) -> AlarmLimits:
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
            p.add(line_of(raw, key) or line, f"alarms: unknown key {key!r}")
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
                line_of(raw, key) or line,
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


def _compression(raw: Any, p: Problems, line: int) -> CompressionSpec:
    if raw is None:
        return CompressionSpec()
    if isinstance(raw, str):
        raw = {"filter": raw}
    if not isinstance(raw, dict):
        p.add(line, "'compression' must be a filter name or {filter, level, min_points}")
        return CompressionSpec()
    for key in sorted(set(raw) - {"filter", "level", "min_points", LINE, KEY_LINES}):
        p.add(line_of(raw, key), f"unknown compression setting {key!r}")
    name = str(raw.get("filter", "none")).lower()
    if name not in COMPRESSION_FILTERS:
        p.add(
            line_of(raw, "filter") or line,
            f"unknown compression filter {name!r} (known: {', '.join(COMPRESSION_FILTERS)})",
        )
        name = "none"
    level, min_points = raw.get("level", 0), raw.get("min_points", 1000)
    for key, value in (("level", level), ("min_points", min_points)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            p.add(line_of(raw, key) or line, f"compression {key} must be a whole number >= 0")
    if name == "gzip" and isinstance(level, int) and level > 9:
        p.add(line_of(raw, "level") or line, "gzip level must be 0 to 9")
    return CompressionSpec(
        name,
        level if isinstance(level, int) else 0,
        min_points if isinstance(min_points, int) else 1000,
    )


def _kafka(raw: Any, p: Problems, line: int) -> KafkaSettings:
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
        p.add(line_of(raw, key), f"unknown kafka setting {key!r}")
    topic = str(raw.get("topic") or "assonant.files")
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,249}", topic):
        p.add(line_of(raw, "topic"), f"kafka topic {topic!r} is not a legal topic name")
    bootstrap = raw.get("bootstrap")
    secure = raw.get("security") or {}
    if not isinstance(secure, dict):
        p.add(line_of(raw, "security"), "kafka security must be a mapping (protocol, sasl_...)")
        secure = {}
    secure = {k: str(v) for k, v in secure.items() if k not in (LINE, KEY_LINES)}
    known = set(SECURITY_ENV)
    for key in sorted(set(secure) - known):
        p.add(line_of(raw, "security"), f"unknown kafka security setting {key!r}")
    secure = {k: v for k, v in secure.items() if k in known}
    for problem in security(secure).problems():  # with the environment, as at the start
        p.add(line_of(raw, "security"), f"kafka security: {problem}")
    return KafkaSettings(
        security=secure,
        bootstrap=str(bootstrap) if bootstrap else None,
        topic=topic,
        enabled=bool(raw.get("enabled", True)),
        idempotent=bool(raw.get("idempotent", True)),
    )
