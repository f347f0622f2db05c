"""Exit statuses and which exceptions are a user's to fix (one line, exit 2)."""

from __future__ import annotations

__all__ = ["EXIT_FAILED", "EXIT_USAGE", "UsageError", "is_user_error"]

EXIT_USAGE = 2
EXIT_FAILED = 1


class UsageError(ValueError):
    """A problem with what the user asked for."""


def is_user_error(e: Exception) -> bool:
    """Whether ``e`` is a problem with the user's input, data, configuration or run folder."""
    from mixvae.checkpoint import CheckpointError
    from mixvae.config import ConfigError
    from mixvae.data import DataError
    from mixvae.evaluation import EvaluationError
    from mixvae.memory import PlanError
    from mixvae.runfolder import RunFolderError

    return isinstance(e, (UsageError, ConfigError, DataError, CheckpointError, RunFolderError, EvaluationError,
                          PlanError))
