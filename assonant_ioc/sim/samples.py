"""What the simulated technique detectors see: known samples, so a test can check physics.

- SAXS: silver behenate (d = 58.38 angstrom), its rings on a 2D detector of known geometry;
- XRF: iron and copper K lines (Fe K-alpha 6.404 keV, Cu K-alpha 8.048 keV) on a background;
- XAS: a copper foil in transmission, its K edge at 8979 eV.
"""

from __future__ import annotations

import numpy as np

#: silver behenate's lamellar spacing, angstrom (its first ring at q = 2 pi / d)
AGBEH_D = 58.38
#: the SAXS camera: frames (slow, fast), pixel size (mm), sample-detector distance (mm) and
#: the beam centre (fast x, slow y; pixels): the simulated beamline's config gives the same
SAXS_SHAPE = (256, 256)
SAXS_PIXEL_MM = 0.172
SAXS_DISTANCE_MM = 500.0
SAXS_CENTRE = (121.3, 133.7)

#: (energy keV, relative intensity) of the fluorescence lines in the XRF sample
XRF_LINES = (
    (6.404, 1.0),  # Fe K-alpha
    (7.058, 0.14),  # Fe K-beta
    (8.048, 1.6),  # Cu K-alpha
    (8.905, 0.22),  # Cu K-beta
)
#: the MCA: channels and its energy calibration (keV = offset + slope * channel)
MCA_CHANNELS = 2048
MCA_OFFSET_KEV = 0.0
MCA_SLOPE_KEV = 0.01

#: the copper K edge, eV
CU_K_EDGE_EV = 8979.0


def agbeh_frame(wavelength_a: float, seed: int = 0) -> np.ndarray:
    """One SAXS frame of silver behenate (counts, uint32) at ``wavelength_a`` angstrom."""
    slow, fast = np.indices(SAXS_SHAPE, dtype=np.float64)
    # pixel centres: pixel (i, j) spans [j, j + 1) fast; pyFAI's convention (poni in pixels)
    dx = (fast + 0.5 - SAXS_CENTRE[0]) * SAXS_PIXEL_MM
    dy = (slow + 0.5 - SAXS_CENTRE[1]) * SAXS_PIXEL_MM
    two_theta = np.arctan2(np.hypot(dx, dy), SAXS_DISTANCE_MM)
    q = 4 * np.pi / wavelength_a * np.sin(two_theta / 2)  # 1/angstrom
    q1 = 2 * np.pi / AGBEH_D
    intensity = 20.0 + 400.0 * np.exp(-q / 0.03)
    for n in range(1, 6):
        intensity += 3000.0 / n**1.5 * np.exp(-0.5 * ((q - n * q1) / 0.0015) ** 2)
    return np.random.default_rng(seed).poisson(intensity).astype(np.uint32)


def xrf_spectrum(scale: float, seed: int = 0) -> np.ndarray:
    """An MCA spectrum (counts per channel, int32) of the Fe/Cu sample; ``scale`` ~ dose."""
    energy = MCA_OFFSET_KEV + MCA_SLOPE_KEV * np.arange(MCA_CHANNELS)
    counts = 30.0 * np.exp(-energy / 6.0)
    for line, rel in XRF_LINES:
        sigma = 0.06 + 0.004 * line  # an SDD's resolution, keV
        counts += 800.0 * rel * np.exp(-0.5 * ((energy - line) / sigma) ** 2)
    return np.random.default_rng(seed).poisson(np.clip(counts * scale, 0, None)).astype(np.int32)


def copper_mu_t(energy_ev: float) -> float:
    """The absorbance (mu * thickness) of the copper foil at ``energy_ev``: a falling
    background, the K edge (an arctangent step centred on the edge) and weak EXAFS."""
    e = float(energy_ev)
    mu = 0.4 * (CU_K_EDGE_EV / e) ** 3
    mu += 1.2 * (0.5 + np.arctan((e - CU_K_EDGE_EV) / 1.5) / np.pi)
    if e > CU_K_EDGE_EV + 10:
        k = np.sqrt(0.2625 * (e - CU_K_EDGE_EV))
        mu += 0.06 * np.sin(2 * 2.55 * k) * np.exp(-0.01 * k**2) / max(k, 1.0)
    return float(mu)
