"""Frozen, typed beamline configuration."""

from __future__ import annotations

import dataclasses
import re
import string
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone

from assonant_ioc import definitions
from assonant_ioc.config.paths import control_characters
from assonant_ioc.model.components import (
    ComponentClass,
    Moment,
    Placement,
    depth_first,
)

ALL_MOMENTS = frozenset(Moment)
SNAPSHOT_MOMENTS = frozenset({Moment.PRE, Moment.POST})

#: Names a file name template may use, e.g. ``{beamline}_{experiment_id}_{counter:05d}.nxs``.
TEMPLATE_FIELDS = ("beamline", "experiment_id", "sample", "counter", "date", "time")


#: A plain format spec: optional fill/align, zero padding, a width of at most 10, d or s.
_PLAIN_SPEC = re.compile(r"^(?:[<>^])?0?(?P<width>\d{0,2})(?:d|s)?$")
#: The longest file name most file systems take, in bytes.
NAME_MAX = 255


def _check_template_fields(template: str) -> None:
    """Only the documented fields, plainly formatted: no attribute or index access, no
    conversion, no nested field, a width of at most 10 (raises ValueError)."""
    for _literal, field, spec, conversion in string.Formatter().parse(template):
        if field is None:
            continue
        if field not in TEMPLATE_FIELDS:
            raise ValueError(f"unknown field {{{field}}}")
        if conversion is not None:
            raise ValueError(f"{{{field}!{conversion}}}: no conversions")
        match = _PLAIN_SPEC.match(spec or "")
        if match is None or "{" in (spec or ""):
            raise ValueError(f"{{{field}:{spec}}}: only a plain width (e.g. 05d) is allowed")
        if match["width"] and int(match["width"]) > 10:
            raise ValueError(f"{{{field}:{spec}}}: a width of at most 10")


def render_file_name(
    template: str, *, beamline: str, experiment_id: str, sample: str, counter: int, when: float
) -> str:
    """Fill a file name template; raises KeyError/ValueError/IndexError when it is malformed
    or gives something that is not one usable path component."""
    _check_template_fields(template)
    stamp = datetime.fromtimestamp(when, tz=timezone.utc)
    name = template.format(
        beamline=beamline,
        experiment_id=experiment_id,
        sample=sample,
        counter=counter,
        date=stamp.strftime("%Y%m%d"),
        time=stamp.strftime("%H%M%S"),
    )
    if (
        not name
        or "/" in name
        or name in (".", "..")
        or name.startswith(".")
        or control_characters(name)
        or len(name.encode()) > NAME_MAX
    ):
        shown = name if len(name) <= 80 else name[:77] + "..."
        raise ValueError(f"template {template!r} gives an unusable file name {shown!r}")
    return name


def check_file_name_template(
    template: str, experiment_id: str = "id", sample: str = "s", beamline: str = "BL"
) -> str | None:
    """Return why a file name template is unusable (with these settings), or None."""
    try:
        render_file_name(
            template,
            beamline=beamline,
            experiment_id=experiment_id or "id",
            sample=sample or "sample",
            counter=1,
            when=0.0,
        )
    except (KeyError, ValueError, IndexError, AttributeError, TypeError) as err:
        return (
            f"bad file name template {template[:80]!r} ({type(err).__name__}: {err}); "
            f"allowed fields: {', '.join(TEMPLATE_FIELDS)}"
        )
    return None


#: an axis as the config gives it: its placement (the value comes from its PV or the config)
AxisSpec = Placement


ConstantValue = bool | int | float | str | tuple[float, ...]


@dataclass(frozen=True)
class ChannelSpec:
    """A field or axis fed by one PV, or (``pv`` empty) an axis fixed by ``value`` in the config."""

    name: str
    pv: str
    units: str
    moments: frozenset[Moment]
    line: int = 0
    axis: AxisSpec | None = None
    value: ConstantValue | None = None


@dataclass(frozen=True)
class ConstantSpec:
    """A field whose value comes from the config, not from a PV."""

    name: str
    value: ConstantValue
    units: str = ""
    line: int = 0


#: Which instant of its exposure a detector stamps a frame with (``frames: {stamp: ...}``).
STAMPS = ("end", "start", "middle")


@dataclass(frozen=True)
class FramesSpec:
    """Where a detector's frames are: the PV that names each file it writes (areaDetector's
    ``FullFileName_RBV``) and the frames' dataset inside each file."""

    file_pv: str
    dataset: str = "/entry/data/data"
    line: int = 0
    #: which instant of its exposure the detector stamps a frame with: end (areaDetector),
    #: start or middle
    stamp: str = "end"
    #: the file plugin's ``Capture_RBV`` (1 while a file is open) and ``NumCaptured_RBV``
    #: (frames in it): EndOfExperiment waits, up to ``timeout`` s, for each file to be closed
    #: and to hold the frames the detector says it captured
    capture_pv: str = ""
    captured_pv: str = ""
    timeout: float = 30.0
    #: Bluesky runs: the data key whose external data (StreamResource, Resource) are these
    #: frames (empty: the run's one image key, when the config has one detector with frames)
    data_key: str = ""
    #: a camera publishing its frames over PVAccess (``pva://`` an NTNDArray, areaDetector's
    #: NDPluginPva): recorded during the exposure into the detector's file (``frame_log``)
    array_pv: str = ""

    def plugin_pvs(self) -> list[str]:
        return [pv for pv in (self.capture_pv, self.captured_pv) if pv]


@dataclass(frozen=True)
class ComponentSpec:
    name: str
    component_class: ComponentClass
    channels: tuple[ChannelSpec, ...] = ()
    constants: tuple[ConstantSpec, ...] = ()
    subcomponents: tuple[ComponentSpec, ...] = ()
    line: int = 0
    frames: FramesSpec | None = None

    def walk(self) -> Iterator[ComponentSpec]:
        return depth_first(self)


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap: str | None = None
    topic: str = "assonant.files"
    enabled: bool = True
    #: an idempotent producer (a retried send is never written twice); off only for a
    #: broker that grants no producer id
    idempotent: bool = True
    #: TLS and SASL (``assonant_ioc.events.security``); the environment overrides them
    security: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class RunControlSettings:
    """Run control over Kafka as the ESS file writer takes it (``run_control:``): ``pl72``
    starts and ``6s4t`` stops on ``command_topic``; ``answ``, ``x5f2`` and ``wrdn`` on
    ``status_topic`` (``wrdn`` after every file, whatever started it)."""

    command_topic: str = ""
    status_topic: str = ""
    #: this service's id in the messages (a command for another service id is not ours)
    service_id: str = ""
    status_every_s: float = 5.0


#: Filters for long time series and arrays (``compression: {filter: ...}``).
COMPRESSION_FILTERS = ("none", "gzip", "lzf", "bitshuffle-lz4", "zstd")


@dataclass(frozen=True)
class CompressionSpec:
    """Chunking and compression of datasets of at least ``min_points`` elements."""

    filter: str = "none"
    level: int = 0
    min_points: int = 1000


@dataclass(frozen=True)
class AlarmLimits:
    """(HIGH: a MINOR alarm, HIHI: a MAJOR alarm) of the IOC's own numbers (``alarms:``)."""

    loop_lag_ms: tuple[float, float] = (200.0, 2000.0)
    mem_used_mb: tuple[float, float] = (1500.0, 3000.0)
    events_pending: tuple[float, float] = (10.0, 100.0)


#: Application definitions a config may name (``definition: NXtomo``): the tables shipped in
#: ``assonant_ioc/definitions``.
DEFINITIONS = definitions.names()


@dataclass(frozen=True)
class BeamlineConfig:
    beamline: str
    prefix: str
    data_dir: str
    file_name: str
    kafka: KafkaSettings
    instrument: tuple[ComponentSpec, ...]
    sample: ComponentSpec | None
    source: str = ""
    definition: str = ""
    compression: CompressionSpec = CompressionSpec()
    run_control: RunControlSettings = RunControlSettings()
    #: a recording starts with the updates of this many seconds before it (``record:
    #: {before_start_s}``, the ESS file writer's time before start; 0: none), kept in a ring
    #: of at most ``before_start_max_updates`` updates (``monitor.history``)
    #: a forwarder's topics (``forwarder: {topics: [...]}``): the ``kafka://SOURCE``
    #: channels are read from them (f144, al00, ep01), on the ``kafka:`` broker
    forwarder_topics: tuple[str, ...] = ()
    before_start_s: float = 0.0
    before_start_max_updates: int = 1_000_000
    #: validate each file after writing it (pynxtools and nexusformat, when installed)
    validate: bool = True
    #: where the experiment in progress and the undelivered events are kept (empty: the default
    #: per-service directory beside the autosave file)
    state_dir: str = ""
    #: a recording is durable on disk at least this often (seconds)
    journal_flush_s: float = 1.0
    #: while recording, the worker builds the file's arrays from the journal at most this
    #: often (seconds; each wait is also at least 4 times the last round's duration)
    staging_every_s: float = 2.0
    #: readings a recording holds in memory while the state directory cannot take them
    #: (about 100 bytes each); beyond, updates are dropped and the gap marked in the file
    journal_max_pending: int = 2_000_000
    #: at start, how long to wait for every PV's first value before saying ready (seconds)
    connect_timeout: float = 5.0
    #: directories DataDir must be inside (empty: anywhere but /proc, /sys, /dev)
    data_root: tuple[str, ...] = ()
    #: the proposal of experiments that name none (Proposal PV empty, a run without
    #: proposal_id); empty: none (the catalog then tags the beamline only)
    proposal: str = ""
    #: directories the detectors' files may be in: a Bluesky Resource or StreamResource
    #: naming a file anywhere else is refused (empty: the data directory only)
    detector_dirs: tuple[str, ...] = ()
    #: EPICS access security file (empty: everyone may write)
    access_security: str = ""
    #: alarm limits of the IOC's health and delivery PVs
    alarms: AlarmLimits = AlarmLimits()

    def components(self) -> Iterator[ComponentSpec]:
        for top in self.instrument:
            yield from top.walk()
        if self.sample is not None:
            yield from self.sample.walk()

    def channels(self) -> Iterator[ChannelSpec]:
        for comp in self.components():
            yield from comp.channels

    def pvs(self, moment: Moment | None = None) -> list[str]:
        """Distinct PV names, in config order, of every channel (or those of one moment)."""
        seen: dict[str, None] = {}
        for ch in self.channels():
            if ch.pv and (moment is None or moment in ch.moments):
                seen.setdefault(ch.pv)
        if moment is None:
            for pv in self.frame_pvs().values():
                seen.setdefault(pv)
            for comp in self.components():
                for pv in comp.frames.plugin_pvs() if comp.frames is not None else ():
                    seen.setdefault(pv)
        return list(seen)

    def frame_pvs(self) -> dict[str, str]:
        """Component name -> the PV naming each file its frames are written to."""
        return {
            c.name: c.frames.file_pv
            for c in self.components()
            if c.frames is not None and c.frames.file_pv
        }

    def array_pvs(self) -> dict[str, str]:
        """Component name -> the NTNDArray PV (``pva://``) its frames come over."""
        return {
            c.name: c.frames.array_pv
            for c in self.components()
            if c.frames is not None and c.frames.array_pv
        }

    def frames_specs(self) -> dict[str, FramesSpec]:
        """Component name -> where its frames are and how to know a file is complete."""
        return {c.name: c.frames for c in self.components() if c.frames is not None}
