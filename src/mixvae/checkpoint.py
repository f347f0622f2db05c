"""Saving and loading weights and checkpoints, safely: loads never run code.

``model.safetensors`` holds the latest weights with the configuration in its header;
``checkpoints/step-XXXXXXXX.pt`` everything needed to resume exactly (see
:class:`mixvae.train.TrainState`), read back with ``torch.load(weights_only=True)``, which
refuses anything but tensors and plain containers. Both are written atomically.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from mixvae.atomic import atomic_write, remove_temp_files
from mixvae.config import RunConfig, load_config
from mixvae.model import MixtureModule
from mixvae.runfolder import CHECKPOINT_DIR, WEIGHTS_FILE

__all__ = [
    "CheckpointError",
    "UnsafeCheckpointError",
    "latest_checkpoint",
    "load_checkpoint",
    "load_latest_checkpoint",
    "load_run",
    "load_state",
    "load_weights",
    "remove_run_temp_files",
    "save_checkpoint",
    "save_weights",
]

_CKPT_RE = re.compile(r"^step-(\d{8})\.pt$")


class CheckpointError(ValueError):
    """A checkpoint or run folder cannot be used; the message says which file and why."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint asks to run code when loaded; it is refused and never replaced by an older one."""


def save_weights(path: Path, module: torch.nn.Module, cfg: RunConfig, metadata: dict[str, str] | None = None) -> None:
    """Write the module's weights as safetensors, with the config (and any ``metadata``) in the header."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    atomic_write(Path(path), st_save(tensors, metadata={"config": cfg.to_json(), **(metadata or {})}))


def load_weights(path: Path, module: torch.nn.Module) -> None:
    """Load safetensors weights into ``module``, refusing files that do not fit it."""
    path = Path(path)
    try:
        tensors = st_load(path.read_bytes())
    except FileNotFoundError:
        raise CheckpointError(f"{path} does not exist: the run folder holds no trained model") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path} is corrupt or truncated ({str(e).splitlines()[0]})") from None
    load_state(module, tensors, path)


def load_state(module: torch.nn.Module, state: dict[str, torch.Tensor], where: Path) -> None:
    """Load ``state`` into ``module``, refusing (CheckpointError naming ``where``) one that does not fit."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or extra or wrong:
        what = (missing[:1] and f"missing {missing[0]}") or (extra[:1] and f"unexpected {extra[0]}") or (
            f"{wrong[0]} has shape {tuple(state[wrong[0]].shape)}, expected {tuple(own[wrong[0]].shape)}"
        )
        raise CheckpointError(f"{where} was made with another model configuration ({what})")
    module.load_state_dict(state)


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"step-{step:08d}.pt"


def save_checkpoint(run_dir: Path, step: int, state: dict[str, Any], keep: int = 2) -> Path:
    """Write ``state`` atomically as checkpoints/step-<step>.pt and keep only the newest ``keep``."""
    buf = io.BytesIO()
    torch.save(state, buf)
    path = checkpoint_path(run_dir, step)
    atomic_write(path, buf.getvalue())
    for old in _checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def _checkpoints(run_dir: Path) -> list[Path]:
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _CKPT_RE.match(p.name))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``: a file that would run code is refused."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path} does not exist") from None
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for corrupt, truncated or unsafe files
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "weights_only" in str(e) or "Unsupported global" in str(e) or "GLOBAL" in str(e):
            raise UnsafeCheckpointError(
                f"{path} was refused: it asks to run code on load, which mixvae never does"
            ) from None
        raise CheckpointError(f"{path} is corrupt or truncated ({first[:200]})") from None
    if not isinstance(state, dict) or "model" not in state or "step" not in state:
        raise CheckpointError(f"{path} is not a mixvae checkpoint (expected model weights and counters)")
    return state


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint of a run folder, or None when it has none."""
    found = _checkpoints(run_dir)
    return found[-1] if found else None


def load_latest_checkpoint(run_dir: Path, warn: Callable[[str], None] | None = None) -> tuple[Path, dict[str, Any]]:
    """The newest checkpoint of ``run_dir`` that loads, and its state.

    A corrupt or truncated checkpoint (say, from a disk that filled up) is passed over for the one
    before it, with a message to ``warn``; one that asks to run code stops everything.
    """
    found = _checkpoints(run_dir)
    if not found:
        raise CheckpointError(f"{run_dir} holds no checkpoint to resume from")
    failed: list[CheckpointError] = []
    for path in reversed(found):
        try:
            state = load_checkpoint(path)
        except UnsafeCheckpointError:
            raise
        except CheckpointError as e:
            failed.append(e)
            continue
        for err in failed:
            if warn is not None:
                warn(f"{err}; resuming from the one before, {path.name}")
        return path, state
    raise CheckpointError(f"{run_dir} holds no checkpoint that loads: {failed[0]}")


def remove_run_temp_files(run_dir: Path) -> list[Path]:
    """Delete the temporary files an interrupted atomic write left in a run folder and its checkpoints."""
    return remove_temp_files(run_dir) + remove_temp_files(Path(run_dir) / CHECKPOINT_DIR)


def load_run(run_dir: Path, device: str | torch.device = "cpu") -> tuple[MixtureModule, RunConfig]:
    """Rebuild a trained model from its run folder (config.yaml + model.safetensors)."""

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir} is not a run folder: expected a folder made by 'mixvae train'")
    cfg = load_config(run_dir)
    module = MixtureModule(cfg.model)
    load_weights(run_dir / WEIGHTS_FILE, module)
    module.to(device).eval()
    return module, cfg
