"""Resolving a run's configuration, in one place for the CLI, the estimator and the benchmarks.

Precedence: dataclass defaults < preset < config file (only the keys it writes) < overrides
(``SECTION.KEY=VALUE``) < named values (command-line flags, estimator parameters). The resolved
configuration is written to every run folder as ``config.yaml``, so a run can be repeated from
its folder alone.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from mixvae.config.presets import PRESETS, preset
from mixvae.config.schema import ConfigError, ModelConfig, RunConfig, check_positive_int, coerce, update_section

__all__ = [
    "CONFIG_FILE",
    "ConfigFileError",
    "config_from_dict",
    "config_from_json",
    "load_config",
    "parse_overrides",
    "read_config_values",
    "resolve_config",
]

CONFIG_FILE = "config.yaml"  # a run folder's settings (written by mixvae.runfolder.save_config)

SECTIONS = ("preset", "data", "image_size", "grayscale", "label_column", "model", "train")


class ConfigFileError(ConfigError):
    """A configuration file is missing or unreadable; the message names the file."""


def config_from_dict(d: Mapping[str, Any], base: RunConfig | None = None) -> RunConfig:
    """Apply a nested mapping (``{"preset": ..., "model": {...}, "train": {...}}``) on top of ``base``.

    When ``base`` is None, the preset ``d`` names (else ``default``) is the starting point; a
    saved configuration of a custom run, whose preset is not a known one, starts from the
    dataclass defaults.
    """
    if not isinstance(d, Mapping):
        raise ConfigError(f"a configuration must be a mapping of sections, got {type(d).__name__}")
    unknown = set(d) - set(SECTIONS)
    if unknown:
        raise ConfigError(f"unknown configuration section(s) {sorted(unknown)}: expected {', '.join(SECTIONS)}")
    cfg = _base(d) if base is None else base
    if "preset" in d:
        cfg = dataclasses.replace(cfg, preset=str(d["preset"]))
    if "data" in d:
        cfg = dataclasses.replace(cfg, data=str(d["data"]))
    if "image_size" in d:
        size = d["image_size"]
        if size is not None:
            check_positive_int("image_size", size)
        cfg = dataclasses.replace(cfg, image_size=size)
    if "grayscale" in d:  # a bool from a file, or a string from --set grayscale=true
        cfg = dataclasses.replace(cfg, grayscale=coerce("grayscale", d["grayscale"], False))
        if not isinstance(cfg.grayscale, bool):
            raise ConfigError(f"grayscale={d['grayscale']!r} is invalid: expected true or false")
    if "label_column" in d:
        cfg = dataclasses.replace(cfg, label_column=None if d["label_column"] is None else str(d["label_column"]))
    if d.get("model"):
        cfg = dataclasses.replace(cfg, model=update_section(cfg.model, d["model"], "model"))
    if d.get("train"):
        cfg = dataclasses.replace(cfg, train=update_section(cfg.train, d["train"], "train"))
    return cfg


def _base(d: Mapping[str, Any]) -> RunConfig:
    model = d.get("model") or {}
    n = model.get("n_components", 10)
    shape = tuple(model.get("image_shape", (28, 28)))
    name = d.get("preset", "default")
    if name in PRESETS:
        return preset(name, n_components=int(n), image_shape=shape)  # type: ignore[arg-type]
    return RunConfig(preset=str(name), model=ModelConfig(n_components=int(n), image_shape=shape))  # type: ignore[arg-type]


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["model.latent_dim=16", "train.lr=0.01"]`` -> ``{"model": {"latent_dim": "16"}, "train": {...}}``.

    Values stay strings: :func:`config_from_dict` turns each into its field's type.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r} is invalid: expected SECTION.KEY=VALUE, e.g. model.latent_dim=16")
        parts = key.strip().split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def _config_path(path: Path | str) -> Path:
    path = Path(path)
    path = path / CONFIG_FILE if path.is_dir() else path
    if not path.exists():
        raise ConfigFileError(f"{path} does not exist: expected a run folder made by 'mixvae train' or a config file")
    return path


def read_config_values(path: Path | str) -> dict[str, Any]:
    """The mapping a YAML/TOML/JSON config file (or a run folder's config.yaml) writes, as written."""
    path = _config_path(path)
    try:
        text = path.read_text()
        if path.suffix == ".toml":
            if sys.version_info >= (3, 11):
                import tomllib  # in the standard library from Python 3.11
            else:  # tomllib is new in 3.11; tomli is the same parser, a dependency on 3.10 only
                import tomli as tomllib  # Python 3.10: the same parser, from PyPI

            d = tomllib.loads(text)
        else:
            d = yaml.safe_load(text)  # JSON is YAML
    except (OSError, UnicodeDecodeError, yaml.YAMLError, ValueError) as e:
        raise ConfigFileError(f"{path} is not a readable YAML/TOML config: {str(e).splitlines()[0]}") from None
    if d is None:
        return {}
    if not isinstance(d, dict):
        raise ConfigFileError(f"{path}: a configuration must be a mapping of sections, got {type(d).__name__}")
    return d


def load_config(path: Path | str) -> RunConfig:
    """Read a RunConfig from a run folder or a YAML/TOML/JSON file."""
    values = read_config_values(path)
    try:
        return config_from_dict(values)
    except ConfigError as e:
        raise ConfigFileError(f"{_config_path(path)}: {e}") from None


def config_from_json(text: str) -> RunConfig:
    """A RunConfig from its JSON form (as stored in a weights file's header)."""
    try:
        return config_from_dict(json.loads(text))
    except (json.JSONDecodeError, ConfigError) as e:
        raise ConfigFileError(f"the stored configuration is unreadable ({e})") from None


def resolve_config(preset_name: str | None = None, config_file: Path | str | None = None,
                   overrides: Iterable[str] | Mapping[str, Any] = (), values: Mapping[str, Any] | None = None,
                   **defaults: Any) -> RunConfig:
    """The configuration of a new run, by the precedence in the module docstring.

    ``overrides`` are ``SECTION.KEY=VALUE`` strings (or their nested mapping); ``values`` is a
    nested mapping of named values (None entries are left out). A preset named here must exist;
    one named in a saved file may be a custom run's.
    """
    file_values = read_config_values(config_file) if config_file is not None else None
    if file_values is not None:
        load_config(config_file)  # type: ignore[arg-type]  # checks the whole file first
    name = preset_name or (file_values or {}).get("preset") or "default"
    cfg = preset(name, **defaults) if preset_name or file_values is None else config_from_dict({"preset": name})
    if file_values:
        cfg = config_from_dict({k: v for k, v in file_values.items() if k != "preset"}, base=cfg)
    if not isinstance(overrides, Mapping):
        overrides = parse_overrides(overrides)
    cfg = config_from_dict(overrides, base=cfg)
    cfg = config_from_dict(_drop_none(values or {}), base=cfg)
    if any(_sets_epochs(m) for m in (file_values, overrides, _drop_none(values or {}))):
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, budget_images=0))
    return cfg


def _sets_epochs(values: Mapping[str, Any] | None) -> bool:
    """Whether a layer of settings names ``train.epochs`` without a budget: a number of epochs given
    anywhere replaces the preset's budget of images seen (see mixvae.config.budget)."""
    train = (values or {}).get("train") or {}
    return isinstance(train, Mapping) and "epochs" in train and "budget_images" not in train


def _drop_none(values: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            value = _drop_none(value)
            if value:
                out[key] = value
        elif value is not None:
            out[key] = value
    return out
