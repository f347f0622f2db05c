"""``mixvae train`` on real-valued vectors: a ``.csv`` table or a float ``.npy`` / ``.npz`` matrix.

The vectors are standardised with each feature's mean and standard deviation over the training
rows (stored in the run's configuration, see :mod:`mixvae.vectors`); the labels of a
``--label-column`` (or of an archive's ``y_train`` / ``y_test``) are used only to report
ACC/NMI/ARI: on the test split when there is one, else on the training rows.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from mixvae.cli.errors import UsageError

__all__ = ["check_image_only", "evaluate_vectors", "is_vector_run", "read_rows", "runs_on_vectors", "vector_run", "write_samples"]


def is_vector_run(args: argparse.Namespace, cfg: Any) -> bool:
    """Whether this run trains on vectors: a resumed vectors run, or --data naming a vectors file."""
    from mixvae.data.builtin import builtin_name
    from mixvae.data.tables import holds_vectors

    if args.resume is not None:
        return bool(cfg.model.input_type == "vectors")
    if cfg.label_column is not None and not str(cfg.data).lower().endswith(".csv"):
        raise UsageError("--label-column names a column of a .csv file given by --data")
    return builtin_name(str(cfg.data)) is None and holds_vectors(Path(str(cfg.data)).expanduser())


def vector_run(args: argparse.Namespace, cfg: Any) -> tuple[Any, Any, Any]:
    """(config, train, evaluated): the run's configuration fitted to the vectors, the training
    rows and the rows its epochs are evaluated on (None without labels), in the model's units."""
    from mixvae.config import config_from_dict, for_data, preset
    from mixvae.data import ImageData
    from mixvae.data.tables import load_vectors
    from mixvae.inputs import as_vectors
    from mixvae.kinds import resolve
    from mixvae.vectors import feature_scaling, to_model_units

    splits = load_vectors(Path(str(cfg.data)).expanduser(), cfg.label_column)
    X, labels = splits["train"]
    if X.ndim != 2 or len(X) < 2 or X.shape[1] < 1:
        raise UsageError(f"{cfg.data} holds an array of shape {X.shape}; expected (samples >= 2, features >= 1)")
    try:
        X = as_vectors(X)
        splits = {k: (as_vectors(x, X.shape[1]), y) for k, (x, y) in splits.items()}
    except ValueError as e:
        raise UsageError(f"{cfg.data}: {e}") from None
    D = int(X.shape[1])
    if args.resume is None:
        base = cfg
        if cfg.preset in _presets():
            recipe = preset(cfg.preset, cfg.model.n_components, (1, D), "vectors")
            base = dataclasses.replace(cfg, model=recipe.model, train=recipe.train)
        mean, std = feature_scaling(X)
        cfg = config_from_dict({"model": {**_changed(cfg), "input_type": "vectors", "image_shape": [1, D],
                                          "feature_mean": list(mean), "feature_std": list(std)},
                                "train": _changed(cfg, "train")}, base=base)
        cfg = resolve(for_data(cfg, len(X)))
    elif cfg.model.input_dim != D:
        raise UsageError(f"{cfg.data} has {D} features, but the run was trained on {cfg.model.input_dim}")
    train = ImageData(to_model_units(cfg.model, X), labels, str(cfg.data))
    test_x, test_y = splits.get("test", (X, labels))
    shown = ImageData(to_model_units(cfg.model, test_x), test_y, str(cfg.data)) if test_y is not None else None
    return cfg, train, shown


def evaluate_vectors(run_dir: Path, cfg: Any, iw_samples: int = 0, iw_images: int | None = None,
                     device: str = "cpu") -> dict[str, Any]:
    """``mixvae evaluate`` of a run on vectors: ACC/NMI/ARI of each split with labels, expert
    use, and the IW bound in nats of the data in its own units; written to ``RUN/eval.json``."""
    import numpy as np

    from mixvae import runfolder
    from mixvae.checkpoint import load_run
    from mixvae.data.tables import label_names, load_vectors
    from mixvae.inference import log_likelihood, predict_proba
    from mixvae.inputs import as_vectors
    from mixvae.metrics import clustering_report
    from mixvae.vectors import log_jacobian, to_model_units

    module, cfg = load_run(run_dir, device)
    try:
        splits = {k: (to_model_units(cfg.model, as_vectors(x, cfg.model.input_dim)), y)
                  for k, (x, y) in load_vectors(Path(str(cfg.data)).expanduser(), cfg.label_column).items()}
    except ValueError as e:
        raise UsageError(f"{cfg.data}: {e}") from None
    result: dict[str, Any] = {"run": str(run_dir), "data": cfg.data}
    if cfg.label_column is not None and str(cfg.data).lower().endswith(".csv"):
        names = label_names(Path(str(cfg.data)).expanduser(), cfg.label_column)
        if names is not None:
            result["class_names"] = names  # labels index them: a .csv's label column, sorted
    for split in ("test", "train"):
        if split in splits:
            x, y = splits[split]
            result[split] = clustering_report(y, predict_proba(module, x, device=device))
    if iw_samples:
        split = "test" if "test" in splits else "train"
        x = splits[split][0][:iw_images]
        ll = log_likelihood(module, x, iw_samples, device=device) - log_jacobian(cfg.model)
        result["log_likelihood"] = {"iw_samples": iw_samples, "images": len(x), "split": split,
                                    "mean_nats": float(ll.mean()),
                                    "stderr": float(ll.std(ddof=1) / np.sqrt(len(ll))) if len(ll) > 1 else 0.0,
                                    "likelihood": "gaussian, learned variances (vectors, nats of the data's units)"}
    runfolder.write_eval(run_dir, result)
    return result


def write_samples(cfg: Any, rows: list[Any], out: Path) -> Path:
    """``mixvae sample`` of a run on vectors: a .csv of the samples in the data's units, one row
    each, its expert first. ``rows`` holds each expert's samples (n, D) in the model's units."""
    import numpy as np

    from mixvae.atomic import atomic_write
    from mixvae.vectors import to_data_units

    lines = [",".join(["expert", *(f"x{d}" for d in range(cfg.model.input_dim))])]
    for k, samples in enumerate(rows):
        lines += [",".join([str(k), *(repr(float(v)) for v in row)]) for row in to_data_units(cfg.model, np.asarray(samples))]
    atomic_write(out, ("\n".join(lines) + "\n").encode())
    return out


def _presets() -> set[str]:
    from mixvae.config import PRESETS

    return set(PRESETS)


def _changed(cfg: Any, section: str = "model") -> dict[str, Any]:
    """The settings of ``section`` where the resolved images config differs from its preset: those
    the user set, carried over to the preset's recipe for vectors."""
    from mixvae.config import preset

    if cfg.preset not in _presets():
        return {}
    ref = preset(cfg.preset, cfg.model.n_components, cfg.model.image_shape).to_dict()[section]
    mine = cfg.to_dict()[section]
    skip = {"image_shape", "channels", "input_type", "feature_mean", "feature_std"}
    return {k: v for k, v in mine.items() if v != ref[k] and k not in skip}


def read_rows(path: Path, cfg: Any, split: str = "train") -> Any:
    """The rows of a vectors file for a run on vectors, as ``mixvae predict`` and ``mixvae assign``
    take them: float64 (N, D) in the data's units.

    A ``.csv`` has the training table's columns; the run's ``label_column``, when the file has
    it, is dropped (its labels are not used). A ``.npy`` is one matrix; an ``.npz`` holds
    ``x_train`` / ``x_test`` (``split``) or ``x``. A missing file, a wrong number of features,
    NaN/inf or a value that is not a number raise a :class:`UsageError` naming the file.
    """
    from mixvae.data import DataError
    from mixvae.data.tables import load_vectors
    from mixvae.inputs import as_vectors

    path = Path(path).expanduser()
    D = int(cfg.model.input_dim)
    if not path.is_file():
        raise UsageError(f"{path} does not exist" if not path.exists() else f"{path} is not a file")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".npy", ".npz"):
        raise UsageError(f"{path} is not a .csv, .npy or .npz file; a run on vectors takes rows of {D} numbers")
    try:
        if suffix == ".csv":
            X = _csv_rows(path, cfg.label_column, D)
        else:
            splits = load_vectors(path)
            if split not in splits:
                raise UsageError(f"{path} has no {split} split; expected x_{split} in the archive")
            X = splits[split][0]
    except DataError as e:
        raise UsageError(str(e).replace(" (name a label column with --label-column)", "").rstrip(".")) from None
    if X.ndim != 2:
        raise UsageError(f"{path} holds an array of shape {X.shape}; expected rows of {D} numbers (samples, {D})")
    if X.shape[1] != D:
        raise UsageError(f"{path} has {X.shape[1]} features per row, but the run was trained on {D}")
    if len(X) == 0:
        raise UsageError(f"{path} holds no rows; expected at least one")
    try:
        return as_vectors(X, D)
    except ValueError as e:
        raise UsageError(f"{path} {str(e).removeprefix('X ').rstrip('.')}") from None


def _csv_rows(path: Path, label_column: str | None, D: int) -> Any:
    """A .csv's features: without the run's label column when the file has it and then has D
    features, else every column (a table of features alone)."""
    from mixvae.data import DataError
    from mixvae.data.tables import read_csv

    errors: list[DataError] = []
    widths = []
    for column in ([label_column] if label_column is not None else []) + [None]:
        try:
            X, _ = read_csv(path, column)
        except DataError as e:
            errors.append(e)
            continue
        if X.shape[1] == D:
            return X
        widths.append(X.shape[1])
    if widths:
        raise UsageError(f"{path} has {widths[0]} features per row, but the run was trained on {D}"
                         + (f" (besides its label column {label_column!r})" if label_column is not None else ""))
    # a file without the label column is read whole: its error, not "no such column", is the one to show
    raise next((e for e in errors if "has no column" not in str(e)), errors[0])


def runs_on_vectors(run: Path) -> bool:
    """Whether ``run`` (a run folder, or a folder written by ``MixtureVAE.save``) holds a model of vectors."""
    from mixvae.config import load_config
    from mixvae.runfolder import CONFIG_FILE

    return (Path(run) / CONFIG_FILE).is_file() and load_config(run).model.input_type == "vectors"


def check_image_only(run: Path, command: str) -> None:
    """Refuse a run on vectors for a command that shows images only (one line, exit status 2)."""
    if runs_on_vectors(run):
        raise UsageError(f"{run} was trained on vectors; {command} shows runs on images only "
                         "(use mixvae predict, assign, evaluate or sample on a run on vectors)")
