"""A Bluesky run's documents to a file, without a RunEngine: hand-made documents (ophyd's
Resource/Datum for an areaDetector HDF5 file, ``PV:`` sources) through the RunWriter; what
a malformed document is told; a redelivery, shuffled, repeated or whole, changes nothing."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from event_model import compose_run

from assonant_ioc.config.loader import load_config
from assonant_ioc.documents.run import MalformedDocument, check
from assonant_ioc.documents.writer import RunWriter
from assonant_ioc.sim.frames import write_frames

Doc = tuple[str, dict[str, Any]]
ANGLES = [0.0, 60.0, 120.0]


def _run(frames_dir: Path) -> list[Doc]:
    """Dark, flat and three projections by an ophyd areaDetector (Resource/Datum), the
    rotation read with each projection; the ring current as baseline; an unmapped key."""
    t0 = 1_800_000_000.0
    path = write_frames(
        frames_dir / "cam_000.h5", np.arange(5 * 16 * 16).reshape(5, 16, 16), 0, [t0] * 5
    )
    run = compose_run(metadata={"experiment_id": "hand-42", "sample": {"name": "Ti"}}, time=t0)
    docs: list[Doc] = [("start", dict(run.start_doc))]
    res = run.compose_resource(
        spec="AD_HDF5",
        root=str(frames_dir),
        resource_path=Path(path).name,
        resource_kwargs={"frame_per_point": 1},
    )
    docs.append(("resource", dict(res.resource_doc)))
    image = {
        "source": "PV:SIM:det:image",
        "dtype": "array",
        "shape": [16, 16],
        "external": "FILESTORE:",
    }
    rx = {"source": "PV:SIM:smp:rx:RBV", "dtype": "number", "shape": [], "units": "deg"}
    odd = {"source": "PV:SIM:odd:thing", "dtype": "number", "shape": [], "object_name": "odd"}
    ring = {"source": "PV:SIM:ring:current", "dtype": "number", "shape": [], "units": "mA"}
    base = run.compose_descriptor(name="baseline", data_keys={"ring": ring}, configuration={})
    dark = run.compose_descriptor(name="dark", data_keys={"cam_image": image}, configuration={})
    flat = run.compose_descriptor(name="flat", data_keys={"cam_image": image}, configuration={})
    primary = run.compose_descriptor(
        name="primary",
        data_keys={"cam_image": image, "rx": rx, "odd-thing": odd},
        configuration={},
    )
    for d in (base, dark, flat, primary):
        docs.append(("descriptor", dict(d.descriptor_doc)))
    docs.append(
        ("event", dict(base.compose_event(data={"ring": 250.0}, timestamps={"ring": t0}, time=t0)))
    )
    point = 0
    t = t0
    for desc, n in ((dark, 1), (flat, 1), (primary, 3)):
        for i in range(n):
            t += 1.0
            datum = res.compose_datum(datum_kwargs={"point_number": point})
            point += 1
            docs.append(("datum", dict(datum)))
            data: dict[str, Any] = {"cam_image": datum["datum_id"]}
            if desc is primary:
                data |= {"rx": ANGLES[i], "odd-thing": 7.0 + i}
            stamps = {k: t - 0.5 for k in data}
            docs.append(("event", dict(desc.compose_event(data=data, timestamps=stamps, time=t))))
    docs.append(
        (
            "event",
            dict(base.compose_event(data={"ring": 249.5}, timestamps={"ring": t}, time=t + 1)),
        )
    )
    docs.append(("stop", dict(run.compose_stop(time=t + 2))))
    return docs


def _writer(tmp_path: Path, name: str) -> RunWriter:
    config = load_config("sim_tomo", {"BL": "SIM:"})
    # the detector's files are anywhere under the test's directory
    config = dataclasses.replace(config, validate=False, detector_dirs=(str(tmp_path),))
    return RunWriter(config, tmp_path / f"{name}-state", str(tmp_path / f"{name}-data"))


def _write(writer: RunWriter, docs: list[Doc]) -> Path:
    done: list[str] = []
    for name, doc in docs:
        done += writer.add(name, doc)
    assert len(set(done)) == 1
    return writer.write(done[0]).path


def _values(path: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda n, o: (
                out.__setitem__(n, repr(np.asarray(o[()]).tolist()))
                if isinstance(o, h5py.Dataset) and "time" not in n.rsplit("/", 1)[-1]
                else None
            )
        )
    return out


def test_resource_datum_frames_image_keys_angles_and_unmapped_keys(tmp_path: Path) -> None:
    docs = _run(tmp_path / "frames")
    path = _write(_writer(tmp_path, "a"), docs)
    with h5py.File(path, "r") as f:
        entry = f["during_exposure"]
        assert entry["definition"][()] == b"NXtomo"
        frames = entry["instrument/detector/data"]
        assert frames.is_virtual and frames.shape == (5, 16, 16)
        # each frame, the dark and the flat included, the one its datum names
        np.testing.assert_array_equal(frames[()], np.arange(5 * 16 * 16).reshape(5, 16, 16))
        assert entry["instrument/detector/image_key"][()].tolist() == [2, 1, 0, 0, 0]
        angles = entry["sample/rotation_angle"][()]
        np.testing.assert_allclose(angles[2:], ANGLES)  # read with each projection
        # a key the config does not name: an NXcollection of its device, never dropped
        odd = entry["instrument/odd"]
        assert odd.attrs["NX_class"] == "NXcollection"
        assert odd["thing/value"][()].tolist() == [7.0, 8.0, 9.0]
        # the baseline stream: the snapshots, by the PV the config maps
        assert f["pre_exposure/instrument/storage_ring/current"][()] == 250.0
        assert f["post_exposure/instrument/storage_ring/current"][()] == 249.5
        assert f["pre_exposure/instrument/storage_ring/current"].attrs["units"] == "mA"
        assert f["during_exposure/sample/name"][()] == b"Ti"
        assert f["during_exposure/experiment_identifier"][()] == b"hand-42"


def test_a_redelivery_shuffled_or_repeated_changes_nothing(tmp_path: Path) -> None:
    docs = _run(tmp_path / "frames")
    first = _values(_write(_writer(tmp_path, "a"), docs))
    # the start first (it names the run), then everything shuffled and twice
    shuffled = docs[1:] * 2
    random.Random(7).shuffle(shuffled)
    stop = next(d for d in shuffled if d[0] == "stop")
    shuffled.remove(stop)
    shuffled.remove(stop)
    writer = _writer(tmp_path, "b")
    again = _values(_write(writer, [docs[0], *shuffled, stop]))
    assert writer.repeated == len(docs) - 2
    assert again == first
    # the whole run once more, after its file was written: nothing new
    for name, doc in docs:
        assert writer.add(name, doc) == []
    assert len(list((tmp_path / "b-data").iterdir())) == 1


_EVENT = {"uid": "e", "descriptor": "d", "seq_num": 1, "time": 1.0, "data": {}, "timestamps": {}}
_SPAN = {"uid": "s", "stream_resource": "r", "descriptor": "d", "seq_nums": {"start": 1, "stop": 2}}


@pytest.mark.parametrize(
    ("name", "doc", "field"),
    [
        ("event", {k: v for k, v in _EVENT.items() if k != "seq_num"}, "seq_num"),
        ("event", _EVENT | {"data": {"x": 1}}, "timestamps.x"),
        ("start", {"uid": 5, "time": 1.0}, "uid"),
        ("stream_datum", _SPAN | {"indices": {"start": 0}}, "indices.stop"),
        ("bogus", {}, "(name)"),
    ],
)
def test_a_malformed_document_is_named_by_its_field(name: str, doc: Any, field: str) -> None:
    with pytest.raises(MalformedDocument) as err:
        check(name, doc)
    assert err.value.field == field and field in str(err.value)
