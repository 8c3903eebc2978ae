"""Which protocol reads a channel's PV, named as ophyd-async names it: ``pva://NAME``
(PVAccess), ``ca://NAME`` or a bare name (Channel Access, or the config's ``protocol:``
default, ``ca`` unless it says ``pva``).

A PVAccess channel's PV keeps its ``pva://`` from here on: the monitor that reads it, the
readings' source and the file's provenance all say the protocol; a Channel Access one is
its bare name, as before.
"""

from __future__ import annotations

from dataclasses import replace

from assonant_ioc.config.parse import Problems
from assonant_ioc.config.spec import ComponentSpec

PVA, CA, KAFKA = "pva://", "ca://", "kafka://"
#: the protocols a config's default may name (``kafka://`` is always said per channel)
PROTOCOLS = ("ca", "pva")


def protocol_of(pv: str) -> str:
    """``pva`` for a PV named ``pva://...`` (as the config leaves it), ``kafka`` for a
    forwarder's source name (``kafka://NAME``: its f144 values on the forwarder's topics),
    else ``ca``."""
    return "pva" if pv.startswith(PVA) else "kafka" if pv.startswith(KAFKA) else "ca"


def bare(pv: str) -> str:
    """The PV's name on the wire, its protocol taken off."""
    for scheme in (PVA, CA, KAFKA):
        if pv.startswith(scheme):
            return pv[len(scheme) :]
    return pv


def named(pv: str, default: str, p: Problems, line: int, what: str) -> str:
    """The PV as the rest of the service names it: ``pva://NAME`` or the bare CA name."""
    scheme, sep, rest = pv.partition("://")
    if sep and scheme not in (*PROTOCOLS, "kafka"):
        p.add(line, f"{what}: protocol {scheme!r} of {pv!r} is not ca://, pva:// or kafka://")
        return pv
    if sep and not rest:
        p.add(line, f"{what}: {pv!r} names no PV after its protocol")
        return pv
    if scheme in ("pva", "kafka") and sep:
        return pv
    if sep:  # ca://
        return rest
    return PVA + pv if default == "pva" and pv else pv


def with_protocols(comp: ComponentSpec, default: str, p: Problems) -> ComponentSpec:
    """``comp`` (and its subcomponents) with each channel's PV named for its protocol."""
    channels = tuple(
        replace(ch, pv=named(ch.pv, default, p, ch.line, f"{comp.name}/{ch.name}"))
        for ch in comp.channels
    )
    subs = tuple(with_protocols(sub, default, p) for sub in comp.subcomponents)
    return replace(comp, channels=channels, subcomponents=subs)
