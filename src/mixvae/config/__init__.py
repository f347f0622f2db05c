"""Configuration: the schema (frozen, self-checking dataclasses), named presets, and resolution.

``resolve_config`` is the one place a run's settings are put together; see
:mod:`mixvae.config.resolve` for the precedence.
"""

from __future__ import annotations

from mixvae.config.budget import for_data, images_seen, restarts_for
from mixvae.config.presets import PRESETS, preset
from mixvae.config.resolve import (
    CONFIG_FILE,
    ConfigFileError,
    config_from_dict,
    config_from_json,
    load_config,
    parse_overrides,
    read_config_values,
    resolve_config,
)
from mixvae.config.schema import ALIASES, ConfigError, ModelConfig, RunConfig, TrainConfig

__all__ = [
    "ALIASES",
    "CONFIG_FILE",
    "PRESETS",
    "ConfigError",
    "ConfigFileError",
    "ModelConfig",
    "RunConfig",
    "TrainConfig",
    "config_from_dict",
    "config_from_json",
    "for_data",
    "images_seen",
    "load_config",
    "parse_overrides",
    "preset",
    "read_config_values",
    "resolve_config",
    "restarts_for",
]
