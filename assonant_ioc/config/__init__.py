"""Beamline configuration: parsed and validated once, at load, into frozen typed objects."""

from assonant_ioc.config.loader import load_config
from assonant_ioc.config.spec import (
    AxisSpec,
    BeamlineConfig,
    ChannelSpec,
    ComponentSpec,
    ConstantSpec,
    KafkaSettings,
)

__all__ = [
    "AxisSpec",
    "BeamlineConfig",
    "ChannelSpec",
    "ComponentSpec",
    "ConstantSpec",
    "KafkaSettings",
    "load_config",
]
