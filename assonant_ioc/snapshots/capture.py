"""Build the entries of an experiment from cached readings (pre/post) or a recording (during)."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from assonant_ioc.config.spec import BeamlineConfig, ComponentSpec
from assonant_ioc.model.components import (
    Axis,
    Component,
    DataField,
    Entry,
    Experiment,
    LinkedData,
    Moment,
    TimeSeries,
    Value,
    exposure_moment,
)
from assonant_ioc.model.readings import Reading


class Recording:
    """Every update of a set of PVs between start and stop; fed from the CA client's threads.

    Stopping is in two steps: :meth:`close` fixes the end time, and updates
    stamped (by their IOC) no later than it are still taken until :meth:`stop`,
    so an update already on the wire when the stop command arrived is not lost.
    """

    #: How long to wait, after the stop command, for updates stamped before it.
    GRACE_S = 0.25

    def __init__(self, pvs: Iterable[str], start: float) -> None:
        self.start = start
        self.end: float | None = None
        self._stopped = False
        self._lock = threading.Lock()
        self._series: dict[str, list[Reading]] = {pv: [] for pv in pvs}

    def wants(self, pv: str) -> bool:
        return pv in self._series

    def add(self, reading: Reading) -> None:
        series = self._series.get(reading.source)
        if series is None:
            return
        with self._lock:
            if self._stopped or (self.end is not None and reading.timestamp > self.end):
                return
            series.append(reading)

    def close(self, end: float) -> None:
        """Fix the end time: later-stamped updates are no longer taken."""
        with self._lock:
            self.end = end

    def stop(self, end: float | None = None) -> dict[str, list[Reading]]:
        """Take nothing more; return every series (oldest first)."""
        with self._lock:
            if self.end is None:
                self.end = end
            self._stopped = True
            return {pv: list(rs) for pv, rs in self._series.items()}

    @property
    def count(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._series.values())


class FileNames:
    """The files a detector wrote during an experiment: each new value of its file-name PV
    (areaDetector's ``FullFileName_RBV``), in order; fed from the CA client's threads.

    The value the PV already held when the experiment began names an earlier file: skipped.
    """

    def __init__(self, pvs: Mapping[str, str]) -> None:
        self._by_pv = {pv: comp for comp, pv in pvs.items()}
        self._files: dict[str, list[str]] = {comp: [] for comp in pvs}
        self._first: set[str] = set()
        self._lock = threading.Lock()

    def wants(self, pv: str) -> bool:
        return pv in self._by_pv

    def add(self, reading: Reading) -> None:
        comp = self._by_pv.get(reading.source)
        if comp is None:
            return
        with self._lock:
            if reading.source not in self._first:  # the value held at the start
                self._first.add(reading.source)
                return
            name = str(reading.value or "").strip()
            files = self._files[comp]
            if name and name not in files:
                files.append(name)

    def files(self) -> dict[str, list[str]]:
        with self._lock:
            return {comp: list(names) for comp, names in self._files.items() if names}


def _constant_reading(name: str, value: object, units: str, when: float) -> Reading:
    return Reading.of(f"config:{name}", value, when, units=units)


def _component(
    spec: ComponentSpec,
    moment: Moment,
    values: Mapping[str, Reading] | Mapping[str, list[Reading]],
    when: float,
    extra_fields: Mapping[str, Reading] | None = None,
    frames: Mapping[str, Sequence[str]] | None = None,
) -> Component | None:
    fields: dict[str, Value] = {}
    axes: dict[str, Axis] = {}
    for ch in spec.channels:
        if moment not in ch.moments:
            continue
        got = values.get(ch.pv) if ch.pv else None
        value: Value
        if ch.value is not None:  # an axis fixed in the config
            value = DataField(_constant_reading(ch.name, ch.value, ch.units, when), ch.units)
        elif isinstance(got, list):
            units = ch.units or (got[0].units if got else "")
            value = TimeSeries(tuple(got), units)
        else:
            reading = got if got is not None else Reading.disconnected(ch.pv, when)
            value = DataField(reading, ch.units or reading.units)
        if ch.axis is None:
            fields[ch.name] = value
        else:
            axes[ch.name] = Axis(
                ch.axis.transformation_type,
                ch.axis.vector,
                ch.axis.offset,
                ch.axis.depends_on,
                value,
            )
    _relink(spec, axes)
    subs = tuple(
        c
        for c in (_component(s, moment, values, when, None, frames) for s in spec.subcomponents)
        if c is not None
    )
    if not fields and not axes and not subs and moment is Moment.DURING:
        return None
    for const in spec.constants:
        fields.setdefault(
            const.name,
            DataField(_constant_reading(const.name, const.value, const.units, when), const.units),
        )
    for name, reading in (extra_fields or {}).items():
        fields.setdefault(name, DataField(reading, reading.units))
    data = None
    if frames is not None and spec.frames is not None and spec.name in frames:
        data = LinkedData(tuple(frames[spec.name]), spec.frames.dataset)
    if not fields and not axes and not subs and data is None:
        return None
    return Component(spec.name, spec.component_class, fields, axes, subs, data)


def _relink(spec: ComponentSpec, axes: dict[str, Axis]) -> None:
    """Skip axes not captured at this moment in each ``depends_on`` chain, so it never dangles."""
    spec_deps = {ch.name: ch.axis.depends_on for ch in spec.channels if ch.axis is not None}
    for name, axis in list(axes.items()):
        dep, hops = axis.depends_on, 0
        while dep != "." and dep not in axes and hops <= len(spec_deps):
            dep, hops = spec_deps.get(dep, "."), hops + 1
        if dep != axis.depends_on:
            axes[name] = replace(axis, depends_on=dep)


def build_entry(
    config: BeamlineConfig,
    moment: Moment,
    values: Mapping[str, Reading] | Mapping[str, list[Reading]],
    start: float,
    end: float,
    sample_name: str = "",
    frames: Mapping[str, Sequence[str]] | None = None,
) -> Entry:
    """One entry: the latest readings (pre/post) or the recorded series (during).

    ``frames`` (component name -> detector files) go to the entry that holds the exposure.
    """
    instrument = tuple(
        c
        for c in (_component(s, moment, values, end, None, frames) for s in config.instrument)
        if c is not None
    )
    sample = None
    if config.sample is not None:
        extra = {"name": Reading.of("SampleName", sample_name, start)} if sample_name else None
        sample = _component(config.sample, moment, values, end, extra)
    return Entry(moment, start, end, instrument, sample)


@dataclass(frozen=True)
class Captured:
    """What one moment captured, kept raw until the file is written.

    Pre/post: the latest reading of every PV when the command arrived (a dict copy);
    during: every update of each recorded PV. Building data classes from it waits for
    EndOfExperiment, off the CA path, so a snapshot costs a dict copy.
    """

    moment: Moment
    values: Mapping[str, Reading] | Mapping[str, list[Reading]]
    start: float
    end: float


def assemble(
    config: BeamlineConfig,
    experiment_id: str,
    sample_name: str,
    captures: Iterable[Captured],
    comment: str = "",
    frames: Mapping[str, Sequence[str]] | None = None,
) -> Experiment:
    """The experiment's data classes from what its moments captured; ``frames`` are the
    detector files written during the experiment (component name -> paths, in order)."""
    captures = list(captures)
    exposure = exposure_moment(c.moment for c in captures) if captures else None
    entries = [
        build_entry(
            config,
            c.moment,
            c.values,
            c.start,
            c.end,
            sample_name,
            frames if c.moment is exposure else None,
        )
        for c in captures
    ]
    return build_experiment(config, experiment_id, sample_name, entries, comment)


def build_experiment(
    config: BeamlineConfig,
    experiment_id: str,
    sample_name: str,
    entries: Iterable[Entry],
    comment: str = "",
) -> Experiment:
    entries = tuple(sorted(entries, key=lambda e: list(Moment).index(e.moment)))
    start = min((e.start_time for e in entries), default=0.0)
    end = max((e.end_time for e in entries), default=0.0)
    return Experiment(
        experiment_id,
        config.beamline,
        sample_name,
        start,
        end,
        entries,
        comment,
        config.definition,
    )
