"""Frozen, typed beamline configuration."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone

from assonant_ioc.model.components import ComponentClass, Moment, TransformationType

ALL_MOMENTS = frozenset(Moment)
SNAPSHOT_MOMENTS = frozenset({Moment.PRE, Moment.POST})

#: Names a file name template may use, e.g. ``{beamline}_{experiment_id}_{counter:05d}.nxs``.
TEMPLATE_FIELDS = ("beamline", "experiment_id", "sample", "counter", "date", "time")


def render_file_name(
    template: str, *, beamline: str, experiment_id: str, sample: str, counter: int, when: float
) -> str:
    """Fill a file name template; raises KeyError/ValueError/IndexError when it is malformed."""
    stamp = datetime.fromtimestamp(when, tz=timezone.utc)
    name = template.format(
        beamline=beamline,
        experiment_id=experiment_id,
        sample=sample,
        counter=counter,
        date=stamp.strftime("%Y%m%d"),
        time=stamp.strftime("%H%M%S"),
    )
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"template {template!r} gives an unusable file name {name!r}")
    return name


def check_file_name_template(template: str) -> str | None:
    """Return why a file name template is unusable, or None when it is fine."""
    try:
        render_file_name(
            template, beamline="BL", experiment_id="id", sample="s", counter=1, when=0.0
        )
    except (KeyError, ValueError, IndexError, AttributeError) as err:
        return (
            f"bad file name template {template!r} ({type(err).__name__}: {err}); "
            f"allowed fields: {', '.join(TEMPLATE_FIELDS)}"
        )
    return None


@dataclass(frozen=True)
class AxisSpec:
    transformation_type: TransformationType
    vector: tuple[float, float, float]
    offset: tuple[float, float, float] | None
    depends_on: str


@dataclass(frozen=True)
class ChannelSpec:
    """A field or axis fed by one PV."""

    name: str
    pv: str
    units: str
    moments: frozenset[Moment]
    line: int = 0
    axis: AxisSpec | None = None


@dataclass(frozen=True)
class ConstantSpec:
    """A field whose value comes from the config, not from a PV."""

    name: str
    value: bool | int | float | str | tuple[float, ...]
    units: str = ""
    line: int = 0


@dataclass(frozen=True)
class ComponentSpec:
    name: str
    component_class: ComponentClass
    channels: tuple[ChannelSpec, ...] = ()
    constants: tuple[ConstantSpec, ...] = ()
    subcomponents: tuple[ComponentSpec, ...] = ()
    line: int = 0

    def walk(self) -> Iterator[ComponentSpec]:
        yield self
        for sub in self.subcomponents:
            yield from sub.walk()


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap: str | None = None
    topic: str = "assonant.files"
    enabled: bool = True


@dataclass(frozen=True)
class BeamlineConfig:
    beamline: str
    prefix: str
    data_dir: str
    file_name: str
    kafka: KafkaSettings
    instrument: tuple[ComponentSpec, ...]
    sample: ComponentSpec | None
    source: str = ""

    def components(self) -> Iterator[ComponentSpec]:
        for top in self.instrument:
            yield from top.walk()
        if self.sample is not None:
            yield from self.sample.walk()

    def channels(self) -> Iterator[ChannelSpec]:
        for comp in self.components():
            yield from comp.channels

    def pvs(self, moment: Moment | None = None) -> list[str]:
        """Distinct PV names, in config order, of every channel (or those of one moment)."""
        seen: dict[str, None] = {}
        for ch in self.channels():
            if moment is None or moment in ch.moments:
                seen.setdefault(ch.pv)
        return list(seen)
