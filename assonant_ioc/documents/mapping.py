"""A run's documents as the moments of an experiment: what the shared build writes.

- the start document: the experiment id, sample, comment and definition (``md:<key>`` in a
  config channel maps any other start metadata into the snapshots);
- the ``baseline`` stream's first event: ``pre_exposure``; its last (a second one):
  ``post_exposure``;
- every other stream (primary, darks, flats, monitors): ``during_exposure``, each data key
  a series over its own timestamps (the event's ``timestamps``, not the event's time);
- detector data the devices wrote (``StreamResource``/``StreamDatum``, ``Resource``/
  ``Datum``): the files, linked; per frame its image key (the stream: ``dark``/``flat``, or an
  ``image_key`` data key), its event's time and the rotation read with it.

A data key maps to the config's channel whose ``pv`` is the key's name or its ``source``
(without ``ca://``, ``pva://``, ``soft://`` or ``PV:``); a key the config does not name goes
into an NXcollection per device, never dropped. Pure: no I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from assonant_ioc.config.parse import nexus_name
from assonant_ioc.config.spec import DEFINITIONS, BeamlineConfig, ChannelSpec, ComponentSpec
from assonant_ioc.documents.run import BASELINE, Run
from assonant_ioc.model.components import (
    ComponentClass,
    Moment,
    SeriesColumns,
    TransformationType,
)
from assonant_ioc.model.readings import UDF_ALARM, Reading, Severity
from assonant_ioc.snapshots import Captured

_SCHEME = re.compile(r"^(?:ca|pva|soft|file)://(?:localhost)?|^PV:")
#: image_key by stream name (NXtomo: 0 projection, 1 flat, 2 dark)
_KEYS = {"dark": 2, "darks": 2, "flat": 1, "flats": 1}


@dataclass(frozen=True)
class FrameInfo:
    """Per frame of a detector's files (in their order): image key, time, rotation read."""

    keys: tuple[int, ...]
    times: tuple[float, ...]
    positions: tuple[tuple[str, tuple[float, ...]], ...] = ()


@dataclass
class RunContent:
    config: BeamlineConfig
    experiment_id: str
    sample: str
    comment: str
    captures: list[Captured]
    frames: dict[str, list[str]] = field(default_factory=dict)
    frame_counts: dict[str, int] = field(default_factory=dict)
    frame_info: dict[str, FrameInfo] = field(default_factory=dict)
    #: detector data that is not a detector's frames: (group, field, [(path, dataset)])
    external: list[tuple[str, str, list[tuple[str, str]]]] = field(default_factory=list)
    notes: dict[str, dict[str, str]] = field(default_factory=dict)


def bare_source(source: str) -> str:
    """A data key's ``source`` as a PV name: ``ca://SIM:m1.RBV`` -> ``SIM:m1.RBV``."""
    return _SCHEME.sub("", str(source)).lstrip("/") if "://" in source else _SCHEME.sub("", source)


def path_of(uri: str) -> str:
    """A ``file://`` URI's local path."""
    parsed = urlparse(uri)
    return unquote(parsed.path) if parsed.scheme in ("file", "") else uri


def _names(config: BeamlineConfig, run: Run) -> dict[str, str]:
    """Data key -> the name its readings go by: the config's PV when it maps the key."""
    pvs = set(config.pvs())
    out: dict[str, str] = {}
    for desc in run.descriptors.values():
        for key, info in desc["data_keys"].items():
            source = str(info.get("source", ""))
            if key in pvs:
                out[key] = key
            elif bare_source(source) in pvs:
                out[key] = bare_source(source)
            else:
                out.setdefault(key, key)
    return out


def _events(run: Run, baseline: bool) -> list[tuple[str, dict[str, Any]]]:
    """(stream, event) of the baseline stream, or of every other one, in time order."""
    out: list[tuple[str, dict[str, Any]]] = []
    for desc_uid, per in run.events.items():
        stream = run.stream_of(desc_uid)
        if (stream == BASELINE) == baseline:
            out.extend((stream, e) for e in per.values())
    out.sort(key=lambda se: (float(se[1]["time"]), int(se[1]["seq_num"])))
    return out


def _reading(run: Run, desc_uid: str, key: str, event: Mapping[str, Any]) -> Reading | None:
    info = run.descriptors[desc_uid]["data_keys"].get(key, {})
    if info.get("external"):
        return None
    value = event["data"][key]
    if value is None:
        return None
    source = str(info.get("source", "")) or key
    return Reading.of(source, value, float(event["timestamps"][key]), str(info.get("units", "")))


def content(config: BeamlineConfig, run: Run, closed_at: float | None = None) -> RunContent:
    """What the run captured, as the build takes it. ``closed_at``: the run had no stop
    document and was closed at that time (the gap is marked)."""
    start = run.start or {}
    names = _names(config, run)
    seen: dict[str, set[Moment]] = {}
    units: dict[str, str] = {}
    devices: dict[str, str] = {}
    for desc in run.descriptors.values():
        for key, info in desc["data_keys"].items():
            units.setdefault(key, str(info.get("units", "")))
            devices.setdefault(key, str(info.get("object_name") or key.split("-")[0]))
    captures: list[Captured] = []
    baseline = _events(run, baseline=True)
    for moment, picked in ((Moment.PRE, baseline[:1]), (Moment.POST, baseline[1:][-1:])):
        for _, event in picked:
            values: dict[str, Reading] = {}
            for key in event["data"]:
                r = _reading(run, event["descriptor"], key, event)
                if r is not None:
                    values[names[key]] = r
                    seen.setdefault(key, set()).add(moment)
            for pv, r in _metadata(config, start).items():
                values[pv] = r
            t = float(event["time"])
            captures.append(Captured(moment, values, t, t))
    during = _events(run, baseline=False)
    run_start = float(start.get("time", during[0][1]["time"] if during else 0.0))
    stop = run.stop
    run_end = float(stop["time"]) if stop else closed_at if closed_at is not None else run_start
    if during:
        points: dict[str, list[tuple[float, Any]]] = {}
        sources: dict[str, tuple[str, str]] = {}
        for desc_uid, per in run.events.items():
            if run.stream_of(desc_uid) == BASELINE or not per:
                continue
            info = run.descriptors[desc_uid]["data_keys"]
            for key in info:
                if info[key].get("external"):
                    continue
                name = names[key]
                got = points.setdefault(name, [])
                before = len(got)
                for event in per.values():
                    value = event["data"].get(key)
                    if value is not None:
                        got.append((float(event["timestamps"][key]), value))
                if len(got) > before:
                    seen.setdefault(key, set()).add(Moment.DURING)
                    if name not in sources:
                        source = str(info[key].get("source", "")) or key
                        sources[name] = (source, units.get(key, ""))
        points = {name: pts for name, pts in points.items() if pts}
        series = {name: _series(*sources[name], pts, closed_at) for name, pts in points.items()}
        captures.append(Captured(Moment.DURING, series, run_start, run_end))
    derived = _config(config, start, names, seen, units, devices)
    out = RunContent(
        derived,
        experiment_id_of(config, start, run.uid),
        sample_of(start),
        _comment(start, run),
        sorted(captures, key=lambda c: list(Moment).index(c.moment)),
    )
    _detector_data(derived, run, names, out)
    if closed_at is not None:
        out.notes.setdefault(Moment.DURING.entry_name, {})["run_incomplete"] = (
            f"No stop document came for run {run.uid}: the service closed it after its "
            "run timeout, at the last document's time; each series ends with a point marked "
            "disconnected (INVALID) there, and whatever the run did after it is not here."
        )
    return out


def _series(
    source: str, units: str, points: list[tuple[float, Any]], closed_at: float | None
) -> SeriesColumns | list[Reading]:
    """A data key's readings over its own timestamps, in time order, each once (a value
    read again with the same timestamp, by another stream or event, is one point): numbers
    as columns (no object per reading), anything else as readings. ``closed_at``: the run
    was closed there without a stop: one more point, disconnected (INVALID)."""
    import numpy as np

    points.sort(key=lambda p: p[0])
    kept = [p for i, p in enumerate(points) if i == 0 or p != points[i - 1]]
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for _, v in kept)
    if not numbers:
        readings = [Reading.of(source, v, t, units) for t, v in kept]
        if closed_at is not None and readings:
            readings.append(Reading.disconnected(source, closed_at, readings[-1]))
        return readings
    times = np.array([t for t, _ in kept], dtype=np.float64)
    ints = all(isinstance(v, int) for _, v in kept) and closed_at is None
    values = np.array([v for _, v in kept], dtype=np.int64 if ints else np.float64)
    connected = np.ones(len(kept), dtype=bool)
    severity = np.zeros(len(kept), dtype=np.int8)
    status = np.zeros(len(kept), dtype=np.int16)
    if closed_at is not None:
        times = np.append(times, closed_at)
        values = np.append(values, np.nan)
        connected = np.append(connected, False)
        severity = np.append(severity, int(Severity.INVALID))
        status = np.append(status, UDF_ALARM)
    dtype = "int64" if ints else "float64"
    return SeriesColumns(source, values, times, severity, status, connected, dtype, units)


def _metadata(config: BeamlineConfig, start: Mapping[str, Any]) -> dict[str, Reading]:
    """Config channels ``md:<key>``: the start document's metadata of that name."""
    out = {}
    for ch in config.channels():
        if ch.pv.startswith("md:") and ch.pv[3:] in start:
            value = start[ch.pv[3:]]
            if isinstance(value, (bool, int, float, str, list, tuple)):
                out[ch.pv] = Reading.of(f"start:{ch.pv[3:]}", value, float(start["time"]))
    return out


def experiment_id_of(config: BeamlineConfig, start: Mapping[str, Any], uid: str) -> str:
    for key in ("experiment_id", "proposal_id", "proposal"):
        value = start.get(key)
        if isinstance(value, (str, int)) and str(value).strip():
            return str(value).strip()
    return f"{config.beamline}-run-{uid[:8]}"


def proposal_of(config: BeamlineConfig, start: Mapping[str, Any]) -> str:
    """The run's proposal: the start document's ``proposal_id`` (or ``proposal``), else
    the config's default."""
    for key in ("proposal_id", "proposal"):
        value = start.get(key)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()
    return config.proposal


def sample_of(start: Mapping[str, Any]) -> str:
    sample = start.get("sample", "")
    if isinstance(sample, Mapping):
        sample = sample.get("name", "")
    return str(sample or "")


def _comment(start: Mapping[str, Any], run: Run) -> str:
    plan = start.get("plan_name", "")
    scan = start.get("scan_id", "")
    parts = [f"Bluesky run {run.uid}"]
    if plan:
        parts.append(f"plan {plan}")
    if scan != "":
        parts.append(f"scan_id {scan}")
    text = ", ".join(parts)
    comment = start.get("comment")
    return f"{comment} ({text})" if isinstance(comment, str) and comment else text


def _config(
    config: BeamlineConfig,
    start: Mapping[str, Any],
    names: Mapping[str, str],
    seen: Mapping[str, set[Moment]],
    units: Mapping[str, str],
    devices: Mapping[str, str],
) -> BeamlineConfig:
    """The config for this run: each mapped channel at the moments the run read it, and a
    collection per device for the keys the config does not name."""
    by_name: dict[str, set[Moment]] = {}
    for key, moments in seen.items():
        by_name.setdefault(names[key], set()).update(moments)
    md = {ch.pv for ch in config.channels() if ch.pv.startswith("md:")}

    def channel(ch: ChannelSpec) -> ChannelSpec:
        if ch.pv in by_name:
            return replace(ch, moments=frozenset(by_name[ch.pv]))
        if ch.pv in md:
            return replace(ch, moments=ch.moments - {Moment.DURING})
        return ch

    def component(spec: ComponentSpec) -> ComponentSpec:
        return replace(
            spec,
            channels=tuple(channel(c) for c in spec.channels),
            subcomponents=tuple(component(s) for s in spec.subcomponents),
        )

    instrument = [component(c) for c in config.instrument]
    taken = {c.name for c in config.components()}
    extra: dict[str, list[ChannelSpec]] = {}
    for key, moments in seen.items():
        if names[key] != key or key in set(config.pvs()):
            continue
        device = devices.get(key, key)
        name = nexus_name(key[len(device) :].lstrip("-_") or key) or "value"
        extra.setdefault(device, []).append(
            ChannelSpec(name, key, units.get(key, ""), frozenset(moments))
        )
    for device, channels in extra.items():
        group = nexus_name(device) or "device"
        while group in taken:
            group += "_"
        taken.add(group)
        instrument.append(ComponentSpec(group, ComponentClass.COLLECTION, tuple(channels)))
    definition = str(start.get("definition", "")) if start.get("definition") else ""
    return replace(
        config,
        instrument=tuple(instrument),
        sample=component(config.sample) if config.sample is not None else None,
        definition=definition if definition in DEFINITIONS else config.definition,
    )


def _rotation_sources(config: BeamlineConfig, run: Run, names: Mapping[str, str]) -> list[str]:
    """The data keys of the sample's rotation axes."""
    if config.sample is None:
        return []
    pvs = {
        ch.pv
        for ch in config.sample.channels
        if ch.axis is not None and ch.axis.transformation_type is TransformationType.ROTATION
    }
    return [key for key, name in names.items() if name in pvs]


def _frames_keys(config: BeamlineConfig, run: Run) -> dict[str, str]:
    """Data key -> the detector component whose frames it is."""
    specs = config.frames_specs()
    out = {s.data_key: comp for comp, s in specs.items() if s.data_key}
    if out or len(specs) != 1:
        return out
    images = {  # the one image key of the run goes to the one detector with frames
        key
        for desc in run.descriptors.values()
        for key, info in desc["data_keys"].items()
        if info.get("external") and len(info.get("shape") or []) >= 2
    }
    return {images.pop(): next(iter(specs))} if len(images) == 1 else {}


def _detector_data(
    config: BeamlineConfig, run: Run, names: Mapping[str, str], out: RunContent
) -> None:
    """The files of each detector's frames, frame by frame; other external data linked."""
    frames_of = _frames_keys(config, run)
    specs = config.frames_specs()
    rotations = {
        key: next(
            (
                str(d["data_keys"][key].get("source") or key)
                for d in run.descriptors.values()
                if key in d["data_keys"]
            ),
            key,
        )
        for key in _rotation_sources(config, run, names)
    }
    # (data key, path, dataset) -> {frame index: (descriptor, seq_num)}
    placed: dict[tuple[str, str, str], dict[int, tuple[str, int]]] = {}
    order: list[tuple[str, str, str]] = []
    for sd in sorted(
        run.stream_datums.values(), key=lambda d: (d["descriptor"], d["seq_nums"]["start"])
    ):
        res = run.stream_resources.get(sd["stream_resource"])
        if res is None:
            continue
        key = str(res["data_key"])
        dataset = str(res["parameters"].get("dataset", "/entry/data/data"))
        where = (key, path_of(str(res["uri"])), dataset)
        if where not in placed:
            placed[where] = {}
            order.append(where)
        i0, i1 = int(sd["indices"]["start"]), int(sd["indices"]["stop"])
        s0, s1 = int(sd["seq_nums"]["start"]), int(sd["seq_nums"]["stop"])
        per = max(1, (i1 - i0) // max(1, s1 - s0))
        for j in range(i1 - i0):
            placed[where][i0 + j] = (sd["descriptor"], s0 + j // per)
    for desc_uid, per_seq in run.events.items():  # Resource/Datum (ophyd, areaDetector)
        for key, info in run.descriptors.get(desc_uid, {}).get("data_keys", {}).items():
            if not info.get("external") or info.get("external") == "STREAM:":
                continue
            for seq, event in per_seq.items():
                datum = run.datums.get(str(event["data"].get(key)))
                if datum is None or str(datum["resource"]) not in run.resources:
                    continue
                res = run.resources[str(datum["resource"])]
                root = str(res.get("root", ""))
                path = str(Path(root) / str(res["resource_path"]))
                kwargs = res.get("resource_kwargs", {})
                fpp = int(kwargs.get("frame_per_point", 1) or 1)
                first = int(datum["datum_kwargs"].get("point_number", seq - 1)) * fpp
                dataset = specs[frames_of[key]].dataset if key in frames_of else "/entry/data/data"
                where = (key, path, dataset)
                if where not in placed:
                    placed[where] = {}
                    order.append(where)
                for j in range(fpp):
                    placed[where][first + j] = (desc_uid, seq)
    infos: dict[str, tuple[list[int], list[float], dict[str, list[float]]]] = {}
    for where in order:
        key, path, dataset = where
        comp = frames_of.get(key)
        count = max(placed[where]) + 1 if placed[where] else 0
        if comp is None:
            device = key.split("-")[0]
            known = next((e for e in out.external if e[1] == nexus_name(key)), None)
            if known is None:
                out.external.append((nexus_name(device), nexus_name(key), [(path, dataset)]))
            else:
                known[2].append((path, dataset))
            continue
        out.frames.setdefault(comp, []).append(path)
        out.frame_counts[path] = count
        keys, times, positions = infos.setdefault(comp, ([], [], {}))
        for index in range(count):
            desc_uid, seq = placed[where].get(index, ("", -1))
            found = run.events.get(desc_uid, {}).get(seq)
            stream = run.stream_of(desc_uid) if desc_uid else ""
            image_key = _KEYS.get(stream.lower(), 0)
            data = found["data"] if found is not None else {}
            for name, value in data.items():
                if name.endswith("image_key") and isinstance(value, (int, float)):
                    image_key = int(value)
            keys.append(image_key)
            times.append(float(found["time"]) if found is not None else math.nan)
            for rot, source in rotations.items():
                value = data.get(rot)
                number = isinstance(value, (int, float)) and not isinstance(value, bool)
                positions.setdefault(source, []).append(
                    float(value) if number and value is not None else math.nan
                )
    for comp, (keys, times, positions) in infos.items():
        out.frame_info[comp] = FrameInfo(
            tuple(keys),
            tuple(times),
            tuple((s, tuple(v)) for s, v in positions.items() if len(v) == len(keys)),
        )
