"""A known object for the simulated camera to look through, so that a reconstruction of its
projections can be checked: a few slices of discs of known attenuation.

Coordinates are pixels of the 16 x 16 camera, the rotation axis at the image's centre
column; a slice is a row. A projection at angle ``theta`` is the line integral of each
slice's attenuation along the beam, computed exactly (a disc's chord), and the camera
sees ``dark + (flat - dark) * exp(-integral)``.
"""

from __future__ import annotations

import numpy as np

SIZE = 16
DARK, FLAT = 100.0, 1000.0
#: (first row, last row, centre x, centre y, radius, attenuation per pixel): the object
#: spans rows 4..11; rows 0..3 and 12..15 see the open beam.
DISCS = (
    (4, 11, 0.0, 0.0, 5.0, 0.08),
    (6, 9, 2.0, -1.5, 2.0, 0.15),
)


def _centres(size: int) -> np.ndarray:
    return np.arange(size) - (size - 1) / 2


def line_integrals(theta_deg: float, size: int = SIZE) -> np.ndarray:
    """(rows, columns) of the attenuation integrated along the beam at rotation ``theta``."""
    theta = np.radians(theta_deg)
    s = _centres(size)
    out = np.zeros((size, size))
    for first, last, cx, cy, radius, mu in DISCS:
        shift = cx * np.cos(theta) + cy * np.sin(theta)  # where the disc's centre projects
        chord = 2 * np.sqrt(np.clip(radius**2 - (s - shift) ** 2, 0, None))
        out[first : last + 1] += mu * chord
    return out


def projection(theta_deg: float, size: int = SIZE) -> np.ndarray:
    """What the camera sees through the object at rotation ``theta`` (counts)."""
    return DARK + (FLAT - DARK) * np.exp(-line_integrals(theta_deg, size))


def slice_image(row: int, size: int = SIZE) -> np.ndarray:
    """The attenuation map of slice ``row`` (size x size, x along columns, y down rows), in
    the frame a filtered back-projection of ``projection`` returns."""
    x = _centres(size)[None, :]
    y = _centres(size)[:, None]
    image = np.zeros((size, size))
    for first, last, cx, cy, radius, mu in DISCS:
        if first <= row <= last:
            image += mu * (((x - cx) ** 2 + (y - cy) ** 2) <= radius**2)
    return image


def filtered_back_projection(sinogram: np.ndarray, angles_deg: np.ndarray) -> np.ndarray:
    """A plain parallel-beam FBP (ramp filter, linear interpolation): (angles, columns) ->
    (columns, columns). Enough to check that frames and their angles agree."""
    n = sinogram.shape[1]
    ramp = np.abs(np.fft.fftfreq(2 * n))
    padded = np.zeros((len(sinogram), 2 * n))
    padded[:, :n] = sinogram
    filtered = np.real(np.fft.ifft(np.fft.fft(padded, axis=1) * ramp, axis=1))[:, :n]
    x = _centres(n)[None, :]
    y = _centres(n)[:, None]
    image = np.zeros((n, n))
    for row, theta in zip(filtered, np.radians(angles_deg), strict=True):
        s = x * np.cos(theta) + y * np.sin(theta) + (n - 1) / 2
        image += np.interp(s, np.arange(n), row, left=0.0, right=0.0)
    return image * np.pi / len(angles_deg)
