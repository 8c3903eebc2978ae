"""Snapshots: turn the PV monitor's readings into entries of the data model (pure)."""

from assonant_ioc.snapshots.capture import (
    Captured,
    FileNames,
    assemble,
    build_entry,
    build_experiment,
)

__all__ = ["Captured", "FileNames", "assemble", "build_entry", "build_experiment"]
