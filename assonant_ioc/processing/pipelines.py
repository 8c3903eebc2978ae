"""The programs that reduce a file, each as its scientists run it:

- NXtomo: **nabu**'s full pipeline (``nabu-config --dataset`` then ``nabu``): flat-field,
  the centre of rotation found by nabu, FBP, on the CPU through OpenCL (PoCL) or a GPU when
  one is present; the volume, or a configured range of slices (``start_z``, ``end_z``);
- NXsas: **pyFAI**'s azimuthal integration of the frames, with the geometry read from the
  file; the curve I(q);
- NXxas: **xraylarch**'s ``pre_edge`` on mu(E) = ln(I0/It) from the file: E0, the edge
  step and the normalised spectrum.

Each reads the raw file only (nothing is written beside it) and works in ``work``.
"""

from __future__ import annotations

import configparser
import functools
import os
import subprocess
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from assonant_ioc.config.units import registry
from assonant_ioc.lifecycle.build import die_with_parent


class PipelineFailed(RuntimeError):
    """The program could not reduce the file (the reason is the message)."""


@dataclass
class Reduced:
    """What a pipeline gives: the program, every parameter, the arrays (name -> (values,
    units)) and what goes into the catalog's metadata."""

    program: str
    version: str
    kind: str  # "volume", "iq" or "xas"
    parameters: dict[str, Any]
    arrays: dict[str, tuple[np.ndarray, str]] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


def _in(item: h5py.Dataset, units: str) -> float:
    """A scalar field in ``units`` (pint converts its own; none: taken as ``units``)."""
    given = item.attrs.get("units", "")
    given = given.decode() if isinstance(given, bytes) else str(given)
    value = float(np.asarray(item[()], dtype=np.float64).ravel()[0])
    if not given.strip():
        return value
    return float(registry().Quantity(value, given).to(units).magnitude)


def _need(group: h5py.Group, path: str) -> h5py.Dataset:
    """``group[path]``, or PipelineFailed naming the field the file lacks."""
    item = group.get(path)
    if not isinstance(item, h5py.Dataset):
        raise PipelineFailed(f"{group.name}/{path} is not in the file: nothing to reduce")
    return item


def _exposure(f: h5py.File) -> h5py.Group:
    for item in f.values():
        if isinstance(item, h5py.Group) and "definition" in item:
            return item
    raise PipelineFailed("no entry with a definition in the file")


def nabu(raw: Path, work: Path, parameters: dict[str, Any], timeout: float) -> Reduced:
    """nabu's pipeline with the configuration ``nabu-config`` writes for the file; only
    where its outputs go (``work``) and the parameters given are changed."""
    bin_dir = Path(sys.executable).parent
    conf = work / "nabu.conf"
    with h5py.File(raw, "r") as f:
        entry = _exposure(f)
        entry_name = entry.name.strip("/")
        pixel_mm = _in(_need(entry, "instrument/detector/x_pixel_size"), "mm")
    subprocess.run(
        [bin_dir / "nabu-config", "--dataset", str(raw), "--output", str(conf), "--nocomments"],
        cwd=work,
        check=True,
        capture_output=True,
        timeout=60,
    )
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(conf)
    parser["dataset"]["hdf5_entry"] = entry_name
    parser["dataset"]["darks_flats_dir"] = str(work)  # nabu's reduced darks/flats: not beside
    (work / "out").mkdir()
    parser["output"]["location"] = str(work / "out")
    parser["output"]["file_prefix"] = "volume"
    parser["output"]["file_format"] = "hdf5"
    for key in ("start_z", "end_z", "rotation_axis_position", "method"):
        if key in parameters:
            parser["reconstruction"][key] = str(parameters[key])
    with conf.open("w") as out:
        parser.write(out)
    run = subprocess.run(
        [bin_dir / "nabu", str(conf)],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=functools.partial(die_with_parent, os.getpid()),  # goes with its job
    )
    if run.returncode != 0 or "Reconstruction completed" not in run.stdout:
        tail = (run.stderr or run.stdout).strip().splitlines()[-3:]
        raise PipelineFailed(f"nabu exited {run.returncode}: {' | '.join(tail)}"[:500])
    (volume_file,) = (work / "out").glob("*.hdf5")
    with h5py.File(volume_file, "r") as f:
        results = next(f[name]["reconstruction"] for name in f if "reconstruction" in f[name])
        volume = np.asarray(results["results/data"][()], dtype=np.float32)
        options = results["configuration/processing_options/reconstruction"]
        cor = float(options["rotation_axis_position"][()])
    used = {section: dict(parser[section]) for section in parser.sections()}
    return Reduced(
        program="nabu",
        version=_version("nabu"),
        kind="volume",
        parameters={"nabu.conf": used, **parameters},
        arrays={"data": (volume, "")},
        metadata={
            "centre_of_rotation": cor,
            "voxel_size_mm": pixel_mm,
            "shape": list(volume.shape),
        },
    )


def pyfai(raw: Path, work: Path, parameters: dict[str, Any], timeout: float) -> Reduced:
    """pyFAI's azimuthal integration of the frames' sum, with the file's geometry."""
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator

    points = int(parameters.get("points", 500))
    with h5py.File(raw, "r") as f:
        entry = _exposure(f)
        det = entry.get("instrument/detector")
        if not isinstance(det, h5py.Group):
            raise PipelineFailed(f"{entry.name}/instrument/detector is not in the file")
        frames = np.asarray(_need(det, "data")[()], dtype=np.float64)
        geometry = {
            "dist": _in(_need(det, "distance"), "m"),
            "poni1": _in(_need(det, "beam_center_y"), "m"),
            "poni2": _in(_need(det, "beam_center_x"), "m"),
            "pixel1": _in(_need(det, "y_pixel_size"), "m"),
            "pixel2": _in(_need(det, "x_pixel_size"), "m"),
            "wavelength": _in(_need(entry, "instrument/monochromator/wavelength"), "m"),
        }
    ai = AzimuthalIntegrator(**geometry)
    image = frames.sum(axis=0) if frames.ndim == 3 else frames
    result = ai.integrate1d(image, points, unit="q_A^-1", mask=image <= 0, error_model="poisson")
    q, intensity, sigma = result.radial, result.intensity, result.sigma
    ok = np.isfinite(intensity) & (intensity > 0)
    return Reduced(
        program="pyFAI",
        version=_version("pyFAI"),
        kind="iq",
        parameters={**geometry, "points": points, "unit": "q_A^-1", "frames": len(frames)},
        arrays={
            "Q": (q[ok], "1/angstrom"),
            "I": (intensity[ok], "arbitrary"),
            "Idev": (sigma[ok] if sigma is not None else np.sqrt(intensity[ok]), "arbitrary"),
        },
        metadata={"q_min": float(q[ok].min()), "q_max": float(q[ok].max())},
    )


def larch(raw: Path, work: Path, parameters: dict[str, Any], timeout: float) -> Reduced:
    """xraylarch's normalisation of mu(E) = ln(I0/It): E0 and the edge step."""
    from larch import Group
    from larch.xafs import pre_edge

    with h5py.File(raw, "r") as f:
        entry = _exposure(f)
        energy_item = _need(entry, "instrument/monochromator/energy")
        given = energy_item.attrs.get("units", "eV")
        given = given.decode() if isinstance(given, bytes) else str(given)
        energy = registry().Quantity(np.asarray(energy_item[()], float), given).to("eV").magnitude
        i0 = np.asarray(_need(entry, "instrument/i0/data")[()], dtype=np.float64)
        it = np.asarray(_need(entry, "instrument/itrans/data")[()], dtype=np.float64)
    if energy.size < 5:
        raise PipelineFailed(f"{energy.size} points: too few for a normalisation")
    mu = np.log(i0 / it)
    group = Group(energy=energy, mu=mu)
    with warnings.catch_warnings():  # larch's own numpy warnings (a mean of an empty slice)
        warnings.simplefilter("ignore", RuntimeWarning)
        pre_edge(group, **{k: v for k, v in parameters.items() if k in ("pre1", "pre2", "norm1")})
    return Reduced(
        program="xraylarch",
        version=_version("xraylarch"),
        kind="xas",
        parameters={
            "pre_edge": {
                k: float(getattr(group, k))
                for k in ("pre1", "pre2", "norm1", "norm2")
                if hasattr(group, k)
            },
            **parameters,
        },
        arrays={
            "energy": (energy, "eV"),
            "mu": (mu, ""),
            "norm": (np.asarray(group.norm, dtype=np.float64), ""),
        },
        metadata={"e0": float(group.e0), "edge_step": float(group.edge_step)},
    )


#: the pipeline name (``jobs.PIPELINES``) -> its function
RUN: dict[str, Callable[[Path, Path, dict[str, Any], float], Reduced]] = {
    "nabu": nabu,
    "pyfai": pyfai,
    "larch": larch,
}
