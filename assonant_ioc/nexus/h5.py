"""HDF5 as NeXus wants it: the only code that sets NX_class and units (nx_group,
nx_field), attributes of fixed-length types, datasets chunked and compressed as the
config says (set for the file being written in COMPRESSION)."""

from __future__ import annotations

import contextvars
from typing import Any

import h5py
import numpy as np

from assonant_ioc.config.spec import CompressionSpec
from assonant_ioc.model.readings import Severity

_NUMBER_TYPES: dict[np.dtype[Any], Any] = {}
_SCALAR_DCPL = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
_SCALAR_DCPL.set_obj_track_times(False)  # as h5py's create_dataset: no times in the header

SCALAR_SPACE = h5py.h5s.create(h5py.h5s.SCALAR)


STR_DTYPE = h5py.string_dtype()


ATTR_TYPES = {
    str: h5py.h5t.py_create(STR_DTYPE, logical=True),
    bool: h5py.h5t.py_create(np.dtype(bool)),
    int: h5py.h5t.py_create(np.dtype(np.int64)),
    float: h5py.h5t.py_create(np.dtype(np.float64)),
}


def nx_attrs(obj: Any, **values: str | bool | int | float) -> None:
    """Scalar attributes through h5py's low-level API (of an object or its id).

    ``obj.attrs[k] = v`` infers a type, writes under a temporary name and renames;
    with six attributes on each of 20,000 fields that was 70% of a file's write time.
    """
    oid = obj.id if isinstance(obj, h5py.HLObject) else obj
    for name, value in values.items():
        kind = type(value)
        tid = ATTR_TYPES[kind]
        attr = h5py.h5a.create(oid, name.encode(), tid, SCALAR_SPACE)
        attr.write(np.array(value, dtype=STR_DTYPE if kind is str else None))


NO_COMPRESSION = CompressionSpec()


COMPRESSION: contextvars.ContextVar[CompressionSpec | None] = contextvars.ContextVar(
    "compression", default=None
)


def filter_options(spec: CompressionSpec) -> dict[str, Any]:
    """h5py ``create_dataset`` options of a compression filter (hdf5plugin's for lz4/zstd)."""
    if spec.filter == "gzip":
        return {"compression": "gzip", "compression_opts": spec.level or 4, "shuffle": True}
    if spec.filter == "lzf":
        return {"compression": "lzf", "shuffle": True}
    if spec.filter in ("bitshuffle-lz4", "zstd"):
        import hdf5plugin

        plugin = (
            hdf5plugin.Bitshuffle(cname="lz4")
            if spec.filter == "bitshuffle-lz4"
            else hdf5plugin.Zstd(clevel=spec.level or 3)
        )
        return dict(plugin)
    return {}


def nx_array(parent: h5py.Group, name: str, data: Any, dtype: Any = None) -> h5py.Dataset:
    """A dataset, chunked and compressed as configured when it is long enough."""
    spec = COMPRESSION.get() or NO_COMPRESSION
    arr = np.asarray(data)
    if arr.ndim == 0 and dtype is None and arr.dtype.kind in "iuf":  # most fields: one number
        return nx_scalar(parent, name, arr)
    if spec.filter == "none" or arr.size < max(spec.min_points, 1) or arr.dtype.kind in "OSU":
        return parent.create_dataset(name, data=data, dtype=dtype)
    return parent.create_dataset(name, data=arr, dtype=dtype, chunks=True, **filter_options(spec))


def nx_scalar(parent: h5py.Group, name: str, arr: np.ndarray) -> h5py.Dataset:
    """One number as a dataset through h5py's low-level API (the same dataset h5py's
    ``create_dataset`` makes, in a fifth of its time: 10,000 fields a snapshot)."""
    tid = _NUMBER_TYPES.get(arr.dtype)
    if tid is None:
        tid = _NUMBER_TYPES[arr.dtype] = h5py.h5t.py_create(arr.dtype)
    dsid = h5py.h5d.create(parent.id, name.encode(), tid, SCALAR_SPACE, dcpl=_SCALAR_DCPL)
    dsid.write(h5py.h5s.ALL, h5py.h5s.ALL, np.ascontiguousarray(arr))
    return h5py.Dataset(dsid)


#: EPICS alarm severities, stored one way everywhere (snapshot tables and NXlog points): an
#: HDF5 enumeration of int8 codes whose names every HDF5 reader shows (h5dump, h5py's
#: ``h5py.check_enum_dtype``)
SEVERITY_DTYPE = h5py.enum_dtype({s.name: int(s) for s in Severity}, basetype="i1")


def nx_group(parent: h5py.Group, name: str, nx_class: str) -> h5py.Group:
    group = parent.create_group(name)
    nx_attrs(group, NX_class=nx_class)
    return group


def nx_field(parent: h5py.Group, name: str, data: Any, units: str = "") -> h5py.Dataset:
    dset = nx_array(parent, name, data)
    if units:
        nx_attrs(dset, units=units)
    return dset
