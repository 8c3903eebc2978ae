"""Validate a written file with pynxtools and nexusformat, and count what they find.

Both validators exit 0 even on errors and report through logging, so their
findings are collected here and classed: an error is something the NeXus
definitions forbid or require (a missing required field, a wrong type, enum or
unit, a broken link); a warning is something they do not describe (none of ours: our
provenance is in NXcollections, which they leave open). Validation is optional: without
the ``validate`` extra the report says it was skipped.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: pynxtools problems that do not make a file wrong: things the definitions do not document.
_PYNX_WARNINGS = {
    "MissingDocumentation",
    "UnitWithoutDocumentation",
    "CompressionStrengthZero",
    "MissingNXclass",
    "OpenEnumWithCustom",
    "OpenEnumWithMissingCustom",
    "NXdataOutdatedConvention",
    "AttributeForNonExistingConcept",
}
#: pynxtools findings that its own rules get wrong, as (kind, path ending): it takes
#: NXdetector_module's ``module_offset`` (a field NXmx and NXdetector_module define) for the
#: reserved suffix ``_offset`` of a field ``module`` that is missing (pynxtools 0.16,
#: ``check_reserved_suffix`` does not look whether the name itself is defined).
_PYNX_FALSE = {("ReservedSuffixWithoutField", "/module_offset")}
_PYNX_PROBLEM = re.compile(r"^(?P<path>.*?)ValidationProblem\.(?P<kind>\w+)(?P<value>.*)$", re.S)
_NX_GROUP_LINE = re.compile(r"^\s*(NX\w+): (?P<path>/\S*)")
#: both validators keep module-level state: one validation at a time
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Finding:
    validator: str  # "pynxtools" or "nexusformat"
    severity: str  # "error" or "warning"
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.validator} {self.severity}: {self.path}: {self.message}"


@dataclass(frozen=True)
class ValidationReport:
    """What the validators found in one file."""

    validators: tuple[str, ...] = ()
    findings: tuple[Finding, ...] = field(default=())
    skipped: str = ""
    #: pynxtools' own verdict per entry with a definition, as it prints it, with the reason:
    #: ``during_exposure (NXtomo): NOT valid: 1 warning (.../image_key_control: ...)``
    verdicts: tuple[str, ...] = ()

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    def count(self, validator: str, severity: str) -> int:
        return sum(1 for f in self.findings if f.validator == validator and f.severity == severity)

    def summary(self) -> str:
        first = f"; first: {self.errors[0]}" if self.errors else ""
        skipped = f" ({self.skipped})" if self.skipped else ""
        verdicts = "".join(f"; pynxtools {v}" for v in self.verdicts)
        return f"{len(self.errors)} errors, {len(self.warnings)} warnings{skipped}{first}{verdicts}"

    def as_event(self) -> dict[str, Any]:
        """The ``validation`` member of the ``file_written`` event."""
        return {
            "validators": list(self.validators),
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "first_errors": [str(f) for f in self.errors[:5]],
            "skipped": self.skipped,
            "verdicts": list(self.verdicts),
        }


def _entries(path: Path) -> list[tuple[str, str]]:
    """(entry name, definition or "") of each NXentry."""
    import h5py

    out = []
    with h5py.File(path, "r") as f:
        for name, group in f.items():
            nx_class = group.attrs.get("NX_class", b"")
            nx_class = nx_class.decode() if isinstance(nx_class, bytes) else str(nx_class)
            if nx_class != "NXentry":
                continue
            definition = group.get("definition")
            text = definition[()] if definition is not None else b""
            out.append((name, text.decode() if isinstance(text, bytes) else str(text)))
    return out


def _pynxtools(
    path: Path, entries: list[tuple[str, str]], verdicts: list[str] | None = None
) -> list[Finding]:
    """pynxtools against each entry's application definition (it needs one: entries without
    are left to nexusformat's base-class walk); its verdict per entry goes to ``verdicts``."""
    import h5py
    from pynxtools.dataconverter.helpers import ValidationProblem, collector
    from pynxtools.dataconverter.validation import validate_hdf_group_against

    kinds = [k.name for k in ValidationProblem]
    findings: list[Finding] = []
    for name, definition in entries:
        if not definition:
            continue
        collector.clear()
        collector.logging = False
        with h5py.File(path, "r") as f:
            valid = validate_hdf_group_against(definition, f[name], str(path))
        start = len(findings)
        for message in sorted(collector.get()):
            # a message is path + "ValidationProblem.<Kind>" + value, run together
            m = _PYNX_PROBLEM.match(message)
            where, rest = (m.group("path"), m.group("kind") + m.group("value")) if m else ("", "")
            kind = max((k for k in kinds if rest.startswith(k)), key=len, default="Unknown")
            value = rest[len(kind) :] if m else message
            false = any(kind == k and where.endswith(end) for k, end in _PYNX_FALSE)
            severity = "warning" if kind in _PYNX_WARNINGS or false else "error"
            findings.append(Finding("pynxtools", severity, where, f"{kind} {value}".strip()))
        if verdicts is not None:
            mine = findings[start:]
            why = "; ".join(f"{f.path}: {f.message.split(' ', 1)[0]}" for f in mine[:3])
            counted = f"{len(mine)} finding(s)" + (f" ({why})" if why else "")
            verdict = "valid" if valid else "NOT valid"
            verdicts.append(f"{name} ({definition}): {verdict}" + ("" if valid else f": {counted}"))
    collector.clear()
    return findings


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.findings: list[Finding] = []
        self.where = ""

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        m = _NX_GROUP_LINE.match(text)
        if record.levelno >= logging.CRITICAL:
            self.where = m.group("path") if m else self.where
        elif record.levelno >= logging.WARNING:
            severity = "error" if record.levelno >= logging.ERROR else "warning"
            self.findings.append(Finding("nexusformat", severity, self.where, text.strip()))


def _nexusformat(path: Path, entries: list[tuple[str, str]]) -> list[Finding]:
    """nexusformat's base-class walk of the whole file, then each entry's definition."""
    from nexusformat.nexus import tree
    from nexusformat.nexus import validate as nxv

    handler = _Records()
    logger = nxv.logger
    level, own = logger.level, list(logger.handlers)
    for h in own:  # nexusformat prints to the terminal: collect instead
        logger.removeHandler(h)
    logger.addHandler(handler)
    h5 = tree.h5
    tree.h5 = _ReadOnlyH5(h5)
    try:
        nxv.validate_file(str(path))
        for name, definition in entries:
            if definition:
                handler.where = f"/{name} ({definition})"
                logger.setLevel(logging.WARNING)
                nxv.validate_application(str(path), f"/{name}", definition)
    finally:
        tree.h5 = h5
        logger.removeHandler(handler)
        for h in own:
            logger.addHandler(h)
        logger.setLevel(level)
    return handler.findings


class _ReadOnlyH5:
    """h5py as nexusformat sees it, its files opened read-only. Its validator reads the
    file inside ``with nxopen(...)``, and ``NXroot.__enter__`` switches to ``r+``: a write
    open of a published file. With HDF5 1.10's superblock (our staged files) that marks
    the file as open for writing, so every other reader is refused meanwhile, and for good
    when the validator is stopped in the middle (``h5clear`` needed)."""

    def __init__(self, h5: Any) -> None:
        self._h5 = h5

    def __getattr__(self, name: str) -> Any:
        return getattr(self._h5, name)

    def File(self, name: Any, mode: str = "r", **kwargs: Any) -> Any:
        return self._h5.File(name, "r", **kwargs)


def _own_checks(path: Path, entries: list[tuple[str, str]]) -> list[Finding]:
    """What the writer found (geometry against the frames, the sweep, the detector files)."""
    from assonant_ioc.nexus.publish import checks_of

    exposure = next(
        (f"/{name}" for name, d in entries if d), f"/{entries[-1][0]}" if entries else "/"
    )
    errors, warnings = checks_of(path)
    return [Finding("assonant", "error", exposure, e) for e in errors] + [
        Finding("assonant", "warning", exposure, w) for w in warnings
    ]


def validate(path: str | Path, definitions: Mapping[str, str] | None = None) -> ValidationReport:
    """Run every validator that is installed on ``path``; never raises for a finding.

    ``definitions`` (entry name -> application definition) checks entries against a
    definition they do not name themselves (a file written by another tool, compared).
    """
    path = Path(path)
    validators: list[str] = []
    findings: list[Finding] = []
    missing: list[str] = []
    verdicts: list[str] = []
    with _LOCK:
        entries = [(name, (definitions or {}).get(name, d)) for name, d in _entries(path)]
        validators.append("assonant")  # the writer's own checks, kept in the file
        findings += _own_checks(path, entries)
        runs: tuple[tuple[str, Any], ...] = (
            ("pynxtools", lambda p, e: _pynxtools(p, e, verdicts)),
            ("nexusformat", _nexusformat),
        )
        for name, run in runs:
            try:
                found = run(path, entries)
            except ImportError:
                missing.append(name)
                continue
            except Exception as err:
                log.exception("%s failed on %s", name, path)
                found = [Finding(name, "error", "/", f"validator failed: {err}")]
            validators.append(name)
            findings += found
    skipped = f"{', '.join(missing)} not installed" if missing else ""
    return ValidationReport(tuple(validators), tuple(findings), skipped, tuple(verdicts))
