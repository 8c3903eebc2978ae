"""JSON round trip of the data classes: ``from_json(to_json(x)) == x``, dtype and shape included."""

from __future__ import annotations

import json
from typing import Any, cast

from assonant_ioc.model.components import (
    Axis,
    Component,
    ComponentClass,
    DataField,
    Entry,
    Experiment,
    LinkedData,
    Moment,
    TimeSeries,
    TransformationType,
    Value,
)
from assonant_ioc.model.readings import Reading, Severity

SCHEMA_VERSION = 1


def reading_to_dict(r: Reading) -> dict[str, Any]:
    return {
        "source": r.source,
        "value": list(r.value) if isinstance(r.value, tuple) else r.value,
        "dtype": r.dtype,
        "shape": list(r.shape),
        "units": r.units,
        "timestamp": r.timestamp,
        "severity": r.severity.name,
        "status": r.status,
        "connected": r.connected,
    }


def reading_from_dict(d: dict[str, Any]) -> Reading:
    value = d["value"]
    return Reading(
        source=d["source"],
        value=tuple(value) if isinstance(value, list) else value,
        dtype=d["dtype"],
        shape=tuple(d["shape"]),
        units=d["units"],
        timestamp=float(d["timestamp"]),
        severity=Severity[d["severity"]],
        status=int(d["status"]),
        connected=bool(d["connected"]),
    )


def _value_to_dict(v: Value) -> dict[str, Any]:
    if isinstance(v, DataField):
        return {"kind": "field", "units": v.units, "reading": reading_to_dict(v.reading)}
    return {
        "kind": "time_series",
        "units": v.units,
        "readings": [reading_to_dict(r) for r in v.points()],
    }


def _value_from_dict(d: dict[str, Any]) -> Value:
    if d["kind"] == "field":
        return DataField(reading=reading_from_dict(d["reading"]), units=d["units"])
    return TimeSeries(readings=tuple(reading_from_dict(r) for r in d["readings"]), units=d["units"])


def component_to_dict(c: Component) -> dict[str, Any]:
    return {
        "name": c.name,
        "class": c.component_class.value,
        "nx_class": c.component_class.nx_class,
        "fields": {k: _value_to_dict(v) for k, v in c.fields.items()},
        "axes": {
            k: {
                "transformation_type": a.transformation_type.value,
                "vector": list(a.vector),
                "offset": list(a.offset) if a.offset is not None else None,
                "depends_on": a.depends_on,
                "value": _value_to_dict(a.value),
            }
            for k, a in c.axes.items()
        },
        "subcomponents": [component_to_dict(s) for s in c.subcomponents],
        "data": (
            {
                "files": list(c.data.files),
                "dataset": c.data.dataset,
                "stamp": c.data.stamp,
                "expected": list(c.data.expected),
            }
            if c.data is not None
            else None
        ),
    }


def _vec(v: list[float]) -> tuple[float, float, float]:
    return (float(v[0]), float(v[1]), float(v[2]))


def component_from_dict(d: dict[str, Any]) -> Component:
    return Component(
        name=d["name"],
        component_class=ComponentClass(d["class"]),
        fields={k: _value_from_dict(v) for k, v in d["fields"].items()},
        axes={
            k: Axis(
                transformation_type=TransformationType(a["transformation_type"]),
                vector=_vec(a["vector"]),
                offset=_vec(a["offset"]) if a["offset"] is not None else None,
                depends_on=a["depends_on"],
                value=_value_from_dict(a["value"]),
            )
            for k, a in d["axes"].items()
        },
        subcomponents=tuple(component_from_dict(s) for s in d["subcomponents"]),
        data=(
            LinkedData(
                tuple(d["data"]["files"]),
                d["data"]["dataset"],
                d["data"].get("stamp", "end"),
                tuple(d["data"].get("expected", ())),
            )
            if d.get("data") is not None
            else None
        ),
    )


def entry_to_dict(e: Entry) -> dict[str, Any]:
    return {
        "moment": e.moment.value,
        "start_time": e.start_time,
        "end_time": e.end_time,
        "instrument": [component_to_dict(c) for c in e.instrument],
        "sample": component_to_dict(e.sample) if e.sample is not None else None,
    }


def entry_from_dict(d: dict[str, Any]) -> Entry:
    return Entry(
        moment=Moment(d["moment"]),
        start_time=float(d["start_time"]),
        end_time=float(d["end_time"]),
        instrument=tuple(component_from_dict(c) for c in d["instrument"]),
        sample=component_from_dict(d["sample"]) if d["sample"] is not None else None,
    )


def experiment_to_dict(x: Experiment) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "experiment_id": x.experiment_id,
        "beamline": x.beamline,
        "sample_name": x.sample_name,
        "start_time": x.start_time,
        "end_time": x.end_time,
        "entries": [entry_to_dict(e) for e in x.entries],
        "comment": x.comment,
        "definition": x.definition,
    }


def experiment_from_dict(d: dict[str, Any]) -> Experiment:
    return Experiment(
        experiment_id=d["experiment_id"],
        beamline=d["beamline"],
        sample_name=d["sample_name"],
        start_time=float(d["start_time"]),
        end_time=float(d["end_time"]),
        entries=tuple(entry_from_dict(e) for e in d["entries"]),
        comment=d.get("comment", ""),
        definition=d.get("definition", ""),
    )


def to_json(x: Experiment) -> str:
    return json.dumps(experiment_to_dict(x))


def from_json(text: str) -> Experiment:
    return experiment_from_dict(cast(dict[str, Any], json.loads(text)))
