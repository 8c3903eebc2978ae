"""NeXus writer: the only module that imports h5py."""

from assonant_ioc.nexus.writer import write_experiment

__all__ = ["write_experiment"]
