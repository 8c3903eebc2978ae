"""Typed data classes of the Assonant data model: fields, time series, axes, components, entries."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from assonant_ioc.model.readings import Reading, Severity


class Moment(enum.Enum):
    """Acquisition moments; each becomes one NXentry named by ``entry_name``."""

    PRE = "pre"
    DURING = "during"
    POST = "post"

    @property
    def entry_name(self) -> str:
        return f"{self.value}_exposure"


class TransformationType(enum.Enum):
    TRANSLATION = "translation"
    ROTATION = "rotation"


class ComponentClass(enum.Enum):
    """Component classes of the Assonant data model; the value is the class name."""

    BEAMLINE = "Beamline"
    SAMPLE = "Sample"
    DETECTOR = "Detector"
    BVS = "BVS"
    DETECTOR_MODULE = "DetectorModule"
    DETECTOR_CHANNEL = "DetectorChannel"
    DETECTOR_ROI = "DetectorROI"
    MONOCHROMATOR = "Monochromator"
    MONOCHROMATOR_CRYSTAL = "MonochromatorCrystal"
    MONOCHROMATOR_VELOCITY_SELECTOR = "MonochromatorVelocitySelector"
    MIRROR = "Mirror"
    SLIT = "Slit"
    STORAGE_RING = "StorageRing"
    BENDING_MAGNET = "BendingMagnet"
    UNDULATOR = "Undulator"
    WIGGLER = "Wiggler"
    BEAM_STOPPER = "BeamStopper"
    SHUTTER = "Shutter"
    BEAM = "Beam"
    COLLIMATOR = "Collimator"
    ATTENUATOR = "Attenuator"
    PINHOLE = "Pinhole"
    FRESNEL_ZONE_PLATE = "FresnelZonePlate"
    SENSOR = "Sensor"
    GRATING = "Grating"
    APERTURE = "Aperture"
    DEWAR = "Dewar"
    CRYOJET = "Cryojet"
    GRANITE_BASE = "GraniteBase"
    COLLECTION = "Collection"

    @property
    def nx_class(self) -> str:
        """The NeXus base class this component is written as."""
        return _NX_CLASS.get(self, "NXcollection")

    @classmethod
    def parse(cls, text: str) -> ComponentClass:
        """Match a class name case-insensitively, ignoring spaces and underscores."""
        key = text.replace(" ", "").replace("_", "").lower()
        for member in cls:
            if member.value.lower() == key:
                return member
        raise ValueError(f"unknown component class {text!r}")

    @property
    def insertion_device_type(self) -> str | None:
        return {"UNDULATOR": "undulator", "WIGGLER": "wiggler"}.get(self.name)


_NX_CLASS = {
    ComponentClass.BEAMLINE: "NXinstrument",
    ComponentClass.SAMPLE: "NXsample",
    ComponentClass.DETECTOR: "NXdetector",
    ComponentClass.BVS: "NXdetector",
    ComponentClass.DETECTOR_MODULE: "NXdetector_module",
    ComponentClass.DETECTOR_CHANNEL: "NXdetector_channel",
    ComponentClass.DETECTOR_ROI: "NXregion",
    ComponentClass.MONOCHROMATOR: "NXmonochromator",
    ComponentClass.MONOCHROMATOR_CRYSTAL: "NXcrystal",
    ComponentClass.MONOCHROMATOR_VELOCITY_SELECTOR: "NXvelocity_selector",
    ComponentClass.MIRROR: "NXmirror",
    ComponentClass.SLIT: "NXslit",
    ComponentClass.STORAGE_RING: "NXsource",
    ComponentClass.BENDING_MAGNET: "NXbending_magnet",
    ComponentClass.UNDULATOR: "NXinsertion_device",
    ComponentClass.WIGGLER: "NXinsertion_device",
    ComponentClass.BEAM_STOPPER: "NXbeam_stop",
    ComponentClass.SHUTTER: "NXbeam_stop",
    ComponentClass.BEAM: "NXbeam",
    ComponentClass.COLLIMATOR: "NXcollimator",
    ComponentClass.ATTENUATOR: "NXattenuator",
    ComponentClass.PINHOLE: "NXpinhole",
    ComponentClass.FRESNEL_ZONE_PLATE: "NXfresnel_zone_plate",
    ComponentClass.SENSOR: "NXsensor",
    ComponentClass.GRATING: "NXgrating",
    ComponentClass.APERTURE: "NXaperture",
}


@dataclass(frozen=True)
class DataField:
    """One value of a field, with the units it is written with."""

    reading: Reading
    units: str


@dataclass(frozen=True, eq=False)
class SeriesColumns:
    """A recorded series of one scalar PV as columns, one element per update, oldest first
    (a recording read back from the journal: no object per reading).

    ``values`` holds NaN (numbers) or "" (strings) where ``connected`` is False; ``times``
    are EPICS timestamps as POSIX seconds. Sequences are numpy arrays or lists.

    ``staged``: the group in the file being written that already holds these columns as
    datasets (the during entry built while recording); the writer links them into place,
    and the sequences may then hold only their lengths (see ``lifecycle.staging``).
    """

    source: str
    values: Any
    times: Any
    severity: Any
    status: Any
    connected: Any
    dtype: str
    units: str = ""
    staged: str = ""

    def __len__(self) -> int:
        return len(self.times)

    def readings(self) -> tuple[Reading, ...]:
        """The same series as readings (for the few consumers that want objects)."""
        out = []
        for v, t, sev, st, conn in zip(
            self.values, self.times, self.severity, self.status, self.connected, strict=True
        ):
            if conn:
                value = v.item() if hasattr(v, "item") else v
                out.append(
                    Reading(
                        self.source,
                        value,
                        self.dtype,
                        (),
                        self.units,
                        float(t),
                        Severity(int(sev)) if 0 <= int(sev) <= 3 else Severity.INVALID,
                        int(st),
                        True,
                    )
                )
            else:
                out.append(Reading.disconnected(self.source, float(t)))
        return tuple(out)


@dataclass(frozen=True)
class TimeSeries:
    """Every reading of a field from the start to the end of a recording: as readings, or
    (a recording read from the journal) as ``columns`` with ``readings`` empty."""

    readings: tuple[Reading, ...]
    units: str
    columns: SeriesColumns | None = None

    def points(self) -> tuple[Reading, ...]:
        """Every reading, whichever form the series is held in."""
        return self.columns.readings() if self.columns is not None else self.readings

    def __len__(self) -> int:
        return len(self.columns) if self.columns is not None else len(self.readings)

    def disconnected_count(self) -> int:
        if self.columns is not None:
            conn = self.columns.connected
            live = int(conn.sum()) if hasattr(conn, "sum") else sum(map(bool, conn))
            return len(self.columns) - live
        return sum(1 for r in self.readings if not r.connected)

    @property
    def values(self) -> list[object]:
        return [r.value for r in self.points()]

    @property
    def timestamps(self) -> list[float]:
        return [r.timestamp for r in self.points()]


Value = DataField | TimeSeries


@dataclass(frozen=True)
class Placement:
    """How an axis places what it moves, as a NeXus transformation (its type, vector and
    offset); ``depends_on`` names the next axis or ``.``. The config gives it (``AxisSpec``)."""

    transformation_type: TransformationType
    vector: tuple[float, float, float]
    offset: tuple[float, float, float] | None
    depends_on: str


@dataclass(frozen=True)
class Axis(Placement):
    """A position as a NeXus transformation: its placement and its value."""

    value: Value

    @classmethod
    def placed(cls, where: Placement, value: Value) -> Axis:
        return cls(where.transformation_type, where.vector, where.offset, where.depends_on, value)


@dataclass(frozen=True)
class LinkedData:
    """Frames that stay in the detector's own files, linked into the master file, never copied.

    ``files`` are absolute paths in acquisition order (dark, flat, projections...);
    ``dataset`` is the frames' path inside each (areaDetector: ``/entry/data/data``).
    """

    files: tuple[str, ...]
    dataset: str = "/entry/data/data"
    #: which instant of its exposure the detector stamps a frame with (areaDetector: end)
    stamp: str = "end"
    #: per file, the frames the detector said it holds (-1: not known)
    expected: tuple[int, ...] = ()
    #: per frame, when the frames' own files do not say it (a Bluesky run's documents do):
    #: image key (0 projection, 1 flat, 2 dark), time (POSIX) and each rotation read with it
    #: (source -> position); empty: from the files' NDAttributes
    keys: tuple[int, ...] = ()
    times: tuple[float, ...] = ()
    positions: tuple[tuple[str, tuple[float, ...]], ...] = ()

    def expected_of(self, path: str) -> int:
        i = self.files.index(path)
        return self.expected[i] if i < len(self.expected) else -1


@dataclass(frozen=True)
class Component:
    """A device of the beamline (or the sample) with its fields, axes and subcomponents."""

    name: str
    component_class: ComponentClass
    fields: Mapping[str, Value] = field(default_factory=dict)
    axes: Mapping[str, Axis] = field(default_factory=dict)
    subcomponents: tuple[Component, ...] = ()
    data: LinkedData | None = None

    @property
    def first_axis(self) -> str | None:
        """The head of the ``depends_on`` chain: the axis no other axis depends on."""
        if not self.axes:
            return None
        targets = {a.depends_on for a in self.axes.values()}
        heads = [name for name in self.axes if name not in targets]
        return heads[0] if heads else next(iter(self.axes))

    def walk(self) -> Iterator[Component]:
        return depth_first(self)


@dataclass(frozen=True)
class Entry:
    """Everything captured at one acquisition moment."""

    moment: Moment
    start_time: float
    end_time: float
    instrument: tuple[Component, ...]
    sample: Component | None

    def readings(self) -> Iterator[Reading]:
        comps = [c for top in self.instrument for c in top.walk()]
        if self.sample is not None:
            comps += list(self.sample.walk())
        for comp in comps:
            values = list(comp.fields.values()) + [a.value for a in comp.axes.values()]
            for val in values:
                if isinstance(val, DataField):
                    yield val.reading
                else:
                    yield from val.points()

    def counts(self) -> tuple[int, int]:
        """(readings captured, of which disconnected), without building recorded readings."""
        comps = [c for top in self.instrument for c in top.walk()]
        if self.sample is not None:
            comps += list(self.sample.walk())
        total = disconnected = 0
        for comp in comps:
            for val in [*comp.fields.values(), *(a.value for a in comp.axes.values())]:
                if isinstance(val, DataField):
                    total += 1
                    disconnected += not val.reading.connected
                else:
                    total += len(val)
                    disconnected += val.disconnected_count()
        return total, disconnected


@dataclass(frozen=True)
class Experiment:
    """One experiment: the entries of its acquisition moments and who/what/when."""

    experiment_id: str
    beamline: str
    sample_name: str
    start_time: float
    end_time: float
    entries: tuple[Entry, ...]
    comment: str = ""
    #: the application definition of the entry that holds the exposure (NXtomo, NXmx) or ""
    definition: str = ""
    #: the proposal it belongs to ("" none): NeXus' experiment_identifier, the catalog's tag
    proposal: str = ""

    @property
    def moments(self) -> list[Moment]:
        return [e.moment for e in self.entries]

    @property
    def exposure(self) -> Entry | None:
        """The entry that holds the exposure (see :func:`exposure_moment`)."""
        if not self.entries:
            return None
        moment = exposure_moment(self.moments)
        return next(e for e in self.entries if e.moment is moment)


def exposure_moment(moments: Iterable[Moment]) -> Moment:
    """The moment whose entry holds the exposure: during if it was recorded, else the last."""
    present = sorted(set(moments), key=list(Moment).index)
    return Moment.DURING if Moment.DURING in present else present[-1]


def depth_first(node: Any) -> Iterator[Any]:
    """``node`` and every one of its ``subcomponents``, each before its own, depth first
    (a component, or a component's spec in the config)."""
    yield node
    for sub in node.subcomponents:
        yield from depth_first(sub)
