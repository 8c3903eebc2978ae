"""What an application definition needs from a beamline config, checked at load.

The writer fills the rest (``definition``, per-frame ``image_key`` and
``rotation_angle``, NXdata links, ``end_time_estimated``); what only the config
can give is checked here, so a config that cannot fill a required field is
refused at start, naming the field.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from assonant_ioc.config.spec import AxisSpec, ComponentSpec
from assonant_ioc.model.components import ComponentClass, TransformationType

Problem = tuple[int, str]


def _names(comp: ComponentSpec) -> set[str]:
    """The field, axis and constant names a component gives."""
    return {c.name for c in comp.channels} | {c.name for c in comp.constants}


def _units(comp: ComponentSpec, name: str) -> str:
    for ch in comp.channels:
        if ch.name == name:
            return ch.units
    for const in comp.constants:
        if const.name == name:
            return const.units
    return ""


def _axis(comp: ComponentSpec, name: str) -> AxisSpec | None:
    return next((ch.axis for ch in comp.channels if ch.name == name and ch.axis), None)


def _need(
    comp: ComponentSpec, path: str, names: Iterable[str], problems: list[Problem], units: bool
) -> None:
    for name in names:
        if name not in _names(comp):
            problems.append((comp.line, f"{path}/{name} is required: give {comp.name!r} a {name}"))
        elif units and not _units(comp, name):
            problems.append((comp.line, f"{path}/{name} needs units in {comp.name!r}"))


def _nxtomo(instrument: list[ComponentSpec], sample: ComponentSpec | None) -> list[Problem]:
    problems: list[Problem] = []
    det = next((c for c in instrument if c.name == "detector"), None)
    if det is None or det.component_class is not ComponentClass.DETECTOR:
        problems.append(
            (
                0,
                "NXtomo: /ENTRY/instrument/detector/data is required: add a Detector component "
                "named 'detector' with frames: {file_pv: ...FullFileName_RBV}",
            )
        )
    elif det.frames is None:
        problems.append(
            (
                det.line,
                "NXtomo: /ENTRY/instrument/detector/data is required: give 'detector' "
                "frames: {file_pv: ...FullFileName_RBV}",
            )
        )
    if sample is None or sample.name != "sample":
        problems.append((0, "NXtomo: /ENTRY/sample is required: add a sample named 'sample'"))
    elif not any(
        ch.axis is not None and ch.axis.transformation_type is TransformationType.ROTATION
        for ch in sample.channels
    ):
        problems.append(
            (
                sample.line,
                "NXtomo: /ENTRY/sample/rotation_angle is required: give the sample "
                "a rotation axis (its PV recorded during the exposure)",
            )
        )
    return problems


def _nxmx(instrument: list[ComponentSpec], sample: ComponentSpec | None) -> list[Problem]:
    problems: list[Problem] = []
    every = [c for top in instrument for c in top.walk()]

    def one(cls: ComponentClass, path: str) -> ComponentSpec | None:
        found = next((c for c in every if c.component_class is cls), None)
        if found is None:
            problems.append((0, f"NXmx: {path} is required: add a {cls.value} component"))
        return found

    det = one(ComponentClass.DETECTOR, "/ENTRY/INSTRUMENT/DETECTOR")
    if det is not None and det.frames is None:
        problems.append(
            (
                det.line,
                f"NXmx: /ENTRY/DATA is required: give {det.name!r} "
                "frames: {file_pv: ...FullFileName_RBV}",
            )
        )
    if det is not None:
        _need(det, "NXmx: DETECTOR", ["sensor_material"], problems, units=False)
        _need(det, "NXmx: DETECTOR", ["sensor_thickness"], problems, units=True)
        module = next(
            (s for s in det.subcomponents if s.component_class is ComponentClass.DETECTOR_MODULE),
            None,
        )
        if module is None:
            problems.append(
                (
                    det.line,
                    f"NXmx: DETECTOR/DETECTOR_MODULE is required: give {det.name!r} a "
                    "DetectorModule subcomponent",
                )
            )
        else:
            _need(module, "NXmx: DETECTOR_MODULE", ["data_origin", "data_size"], problems, False)
            for name in ("fast_pixel_direction", "slow_pixel_direction"):
                axis = _axis(module, name)
                if axis is None:
                    problems.append(
                        (
                            module.line,
                            f"NXmx: DETECTOR_MODULE/{name} is required: an axis of "
                            f"{module.name!r} with units, vector and offset",
                        )
                    )
                elif axis.offset is None:
                    problems.append(
                        (module.line, f"NXmx: DETECTOR_MODULE/{name}@offset is required")
                    )
    beam = one(ComponentClass.BEAM, "/ENTRY/INSTRUMENT/BEAM")
    if beam is not None:
        _need(beam, "NXmx: BEAM", ["incident_wavelength"], problems, units=True)
    source = one(ComponentClass.STORAGE_RING, "/ENTRY/INSTRUMENT/SOURCE")
    if source is not None:
        _need(source, "NXmx: SOURCE", ["name"], problems, units=False)
    if sample is None:
        problems.append((0, "NXmx: /ENTRY/SAMPLE is required: add a sample"))
    elif not any(ch.axis is not None for ch in sample.channels):
        problems.append(
            (
                sample.line,
                "NXmx: /ENTRY/SAMPLE/depends_on is required: give the sample its goniometer axes",
            )
        )
    return problems


_CHECKS: dict[str, Callable[[list[ComponentSpec], ComponentSpec | None], list[Problem]]] = {
    "NXtomo": _nxtomo,
    "NXmx": _nxmx,
}


def missing_for_definition(
    definition: str, instrument: list[ComponentSpec], sample: ComponentSpec | None
) -> list[Problem]:
    """(line, message) for each thing ``definition`` requires that the config does not give."""
    return _CHECKS[definition](instrument, sample)
