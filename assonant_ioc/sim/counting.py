"""The simulated counting devices of the spectroscopy techniques: an MCA (XRF) and a scaler
with three counters (XAS). Each count ends by posting every result with one timestamp, as a
scaler record or an MCA does, so that a reader can tell which readings belong together."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from caproto import ChannelType
from caproto.server import PVGroup, pvproperty

from assonant_ioc.sim import samples


def _current(group: PVGroup) -> float:
    """The ring current's share of the nominal 100 mA (the dose)."""
    return float(group.parent.ring.current.value) / 100.0


async def _counted(preset: Any) -> float:
    """Count for the preset time (a PV's value; never negative): the seconds counted."""
    seconds = max(0.0, float(preset.value))
    await asyncio.sleep(seconds)
    return seconds


class Mca(PVGroup):
    """An energy-dispersive detector's MCA: ``Acquire`` 1 counts for ``PresetReal`` s, then
    posts the spectrum, live and real time together; ``Acquire`` reads 0 again (a put with
    callback completes) when it is done."""

    Acquire = pvproperty(
        value=0, dtype=ChannelType.ENUM, enum_strings=["Done", "Acquire"], doc="1 to count"
    )
    PresetReal = pvproperty(value=0.2, units="s", precision=3, doc="counting time")
    Spectrum = pvproperty(
        value=[0] * samples.MCA_CHANNELS,
        dtype=ChannelType.LONG,
        max_length=samples.MCA_CHANNELS,
        read_only=True,
        doc="counts per channel",
    )
    CalibOffset = pvproperty(
        value=samples.MCA_OFFSET_KEV, units="keV", precision=5, doc="energy of channel 0"
    )
    CalibSlope = pvproperty(
        value=samples.MCA_SLOPE_KEV, units="keV", precision=6, doc="energy per channel"
    )
    LiveTime = pvproperty(value=0.0, units="s", precision=4, read_only=True, doc="live time")
    RealTime = pvproperty(value=0.0, units="s", precision=4, read_only=True, doc="real time")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._count = 0

    @Acquire.putter
    async def Acquire(self, instance: Any, value: Any) -> Any:
        if value in (1, "Acquire"):  # a put with callback completes when the count is done
            real = await _counted(self.PresetReal)
            self._count += 1
            spectrum = samples.xrf_spectrum(real / 0.2 * _current(self), seed=self._count)
            now = time.time()
            await self.Spectrum.write(spectrum.tolist(), timestamp=now)
            await self.LiveTime.write(real * 0.97, timestamp=now)
            await self.RealTime.write(real, timestamp=now)
        return 0


class Scaler(PVGroup):
    """Counters behind a copper foil: ``Count`` 1 counts for ``Preset`` s at the
    monochromator's energy, then posts ``I0`` (incident), ``It`` (transmitted) and ``If``
    (fluorescence) with one timestamp; ``Count`` reads 0 again when it is done."""

    Count = pvproperty(
        value=0, dtype=ChannelType.ENUM, enum_strings=["Done", "Count"], doc="1 to count"
    )
    Preset = pvproperty(value=0.05, units="s", precision=3, doc="counting time")
    I0 = pvproperty(value=0, units="counts", read_only=True, doc="incident intensity")
    It = pvproperty(value=0, units="counts", read_only=True, doc="transmitted intensity")
    If = pvproperty(value=0, units="counts", read_only=True, doc="fluorescence intensity")

    @Count.putter
    async def Count(self, instance: Any, value: Any) -> Any:
        if value not in (1, "Count"):
            return 0
        preset = await _counted(self.Preset)  # the put's callback: when the count is done
        now = time.time()
        energy_ev = 1000.0 * self.parent.mono.energy.position_at(now)
        i0 = 2.0e6 * preset / 0.05 * _current(self)
        mu_t = samples.copper_mu_t(energy_ev)
        edge = mu_t - 0.4 * (samples.CU_K_EDGE_EV / energy_ev) ** 3
        await self.I0.write(round(i0), timestamp=now)
        await self.It.write(round(i0 * math.exp(-mu_t)), timestamp=now)
        await self.If.write(round(0.02 * i0 * max(edge, 0.0)), timestamp=now)
