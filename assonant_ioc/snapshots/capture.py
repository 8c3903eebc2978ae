"""Build the entries of an experiment from cached readings (pre/post) or a recording (during)."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from assonant_ioc.config.spec import BeamlineConfig, ComponentSpec
from assonant_ioc.model.components import (
    Axis,
    Component,
    DataField,
    Entry,
    Experiment,
    LinkedData,
    Moment,
    SeriesColumns,
    TimeSeries,
    Value,
    exposure_moment,
)
from assonant_ioc.model.readings import Reading

log = logging.getLogger(__name__)

#: What a moment captured per PV: the latest reading (pre/post) or the recorded series
#: (during: readings, or columns when read back from the journal).
Captures = Mapping[str, Reading] | Mapping[str, list[Reading] | SeriesColumns]


class FileNames:
    """The files a detector wrote during an experiment: each new value of its file-name PV
    (areaDetector's ``FullFileName_RBV``), in order; fed from the CA client's threads.

    The value the PV already held when the experiment began names an earlier file: skipped.
    """

    def __init__(
        self,
        pvs: Mapping[str, str],
        known: Mapping[str, Sequence[str]] | None = None,
        held: Mapping[str, str] | None = None,
        on_new: Callable[[str, str], None] | None = None,
        plugins: Mapping[str, tuple[str, str]] | None = None,
        on_closed: Callable[[str, str, int], None] | None = None,
    ) -> None:
        """``known``: files already seen (component -> paths, a recovered experiment);
        ``held``: the value each PV held when the experiment began (skipped when seen again);
        ``on_new(component, path)`` is called for each new file (the journal keeps it).
        ``plugins``: component -> its file plugin's (``Capture_RBV``, ``NumCaptured_RBV``);
        when a file closes (Capture back to 0) ``on_closed(component, path, frames)`` is told
        how many frames the detector says it holds."""
        self._by_pv = {pv: comp for comp, pv in pvs.items()}
        self._files: dict[str, list[str]] = {c: list((known or {}).get(c, ())) for c in pvs}
        self._held: dict[str, str | None] = dict(held or {})
        self._first: set[str] = set(self._held) if held is not None else set()
        self._on_new = on_new
        self._lock = threading.Lock()
        self._capture = {cap: comp for comp, (cap, _) in (plugins or {}).items() if cap}
        self._captured = {n: comp for comp, (_, n) in (plugins or {}).items() if n}
        self._open: dict[str, bool] = {}  # component -> Capture_RBV's last value
        self._count: dict[str, int] = {}  # component -> NumCaptured_RBV's last value
        self._current: dict[str, str] = {}  # component -> the file it writes now
        self.expected: dict[str, int] = {}  # path -> frames the detector said it holds
        self._on_closed = on_closed

    def wants(self, pv: str) -> bool:
        return pv in self._by_pv or pv in self._capture or pv in self._captured

    def is_open(self, component: str) -> bool:
        """Whether the component's file plugin has a file open (Capture_RBV 1)."""
        with self._lock:
            return self._open.get(component, False)

    def _plugin(self, pv: str, value: Any) -> None:
        """Capture_RBV or NumCaptured_RBV: a file closing gives its frame count."""
        closed: tuple[str, str, int] | None = None
        with self._lock:
            if pv in self._captured:
                with contextlib.suppress(TypeError, ValueError):
                    self._count[self._captured[pv]] = int(value)
                return
            comp = self._capture[pv]
            try:
                is_open = bool(int(value))
            except (TypeError, ValueError):
                is_open = str(value).strip().lower() in ("capture", "capturing", "1")
            was_open = self._open.get(comp, False)
            self._open[comp] = is_open
            path = self._current.get(comp)
            if was_open and not is_open and path is not None:
                n = self._count.get(comp, 0)
                self.expected[path] = n
                closed = (comp, path, n)
        if closed is not None and self._on_closed is not None:
            try:
                self._on_closed(*closed)
            except Exception:  # never into libca's thread; the count stays in memory
                log.exception("cannot journal the frame count of %s", closed[1])

    def held(self) -> dict[str, str | None]:
        """The value each PV held when the experiment began."""
        with self._lock:
            return dict(self._held)

    def add(
        self, pv: str, value: Any, t: float, severity: int, status: int, connected: bool
    ) -> None:
        if not connected:
            return
        if pv in self._capture or pv in self._captured:
            self._plugin(pv, value)
            return
        comp = self._by_pv.get(pv)
        if comp is None:
            return
        name = str(value or "").strip()
        with self._lock:
            if pv not in self._first:  # the value held at the start
                self._first.add(pv)
                self._held[pv] = name
                return
            files = self._files[comp]
            if not name or name in files or name == self._held.get(pv):
                return
            files.append(name)
            self._current[comp] = name
        if self._on_new is not None:
            try:
                self._on_new(comp, name)
            except Exception:  # never into libca's thread; the file stays in memory
                log.exception("cannot journal detector file %s", name)

    def files(self) -> dict[str, list[str]]:
        with self._lock:
            return {comp: list(names) for comp, names in self._files.items() if names}


def _constant_reading(name: str, value: object, units: str, when: float) -> Reading:
    return Reading.of(f"config:{name}", value, when, units=units)


def _component(
    spec: ComponentSpec,
    moment: Moment,
    values: Captures,
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
        elif isinstance(got, SeriesColumns):
            value = TimeSeries((), ch.units or got.units, got)
        else:
            reading = got if got is not None else Reading.disconnected(ch.pv, when)
            value = DataField(reading, ch.units or reading.units)
        if ch.axis is None:
            fields[ch.name] = value
        else:
            axes[ch.name] = Axis.placed(ch.axis, value)
    _relink(spec, axes)
    subs = tuple(
        c
        for c in (_component(s, moment, values, when, None, frames) for s in spec.subcomponents)
        if c is not None
    )
    # during the exposure, only what was recorded, and what the config fixes (the
    # beam's energy, the detector's pixel size: the exposure's definition needs them)
    if not fields and not axes and not subs and not spec.constants and moment is Moment.DURING:
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
        data = LinkedData(tuple(frames[spec.name]), spec.frames.dataset, spec.frames.stamp)
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
    values: Captures,
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
    values: Captures
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


def with_linked(x: Experiment, change: Callable[[Component, LinkedData], LinkedData]) -> Experiment:
    """``x`` with ``change(component, its LinkedData)`` for every component with frames."""

    def comp(c: Component) -> Component:
        data = change(c, c.data) if c.data is not None else None
        return replace(c, data=data, subcomponents=tuple(comp(s) for s in c.subcomponents))

    entries = tuple(replace(e, instrument=tuple(comp(c) for c in e.instrument)) for e in x.entries)
    return replace(x, entries=entries)


def with_frame_counts(x: Experiment, counts: Mapping[str, int]) -> Experiment:
    """``x`` with each detector file's frame count (path -> frames the detector said it
    holds) in its LinkedData."""
    return with_linked(
        x, lambda _, data: replace(data, expected=tuple(counts.get(f, -1) for f in data.files))
    )


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
