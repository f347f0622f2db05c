"""Loading a dataset: :func:`load` and :func:`load_split_pair`, for built-in datasets and user data.

A ``str`` naming a built-in dataset goes to :mod:`mixvae.data.builtin`; anything else is a path
to a folder (:mod:`mixvae.data.folders`) or a file (:mod:`mixvae.data.formats`, or one image).
"""

from __future__ import annotations

from pathlib import Path

from mixvae.data.arrays import (
    DataError,
    ImageData,
    Split,
    check_image_size,
    check_images,
    one_line,
    resize,
    to_grayscale,
)
from mixvae.data.builtin import BUILTIN, Log, builtin_name, cached_arrays
from mixvae.data.folders import IMAGE_EXTENSIONS, LazyImages, load_folder, load_image_files
from mixvae.data.formats import idx_kind, load_npy, load_npz, read_idx


def _load_file(path: Path, image_size: int | None, grayscale: bool) -> dict[str, Split]:
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return load_npz(path)
    if suffix == ".npy":
        return {"train": (load_npy(path), None)}
    if suffix in IMAGE_EXTENSIONS:
        return {"train": load_image_files(path.parent, [path], image_size, grayscale)}
    if idx_kind(path.name) == "images":
        return {"train": (check_images(read_idx(path, 3), str(path)), None)}
    raise DataError(
        f"{path} has an unsupported file type; expected a folder of images or IDX files, "
        "a .npz/.npy file or an *images*idx3* file."
    )


def _load_user(path: Path, image_size: int | None, grayscale: bool) -> dict[str, Split]:
    if not path.exists():
        raise DataError(
            f"{path} does not exist; expected a built-in dataset ({', '.join(BUILTIN)}), "
            "a folder of images or IDX files, or a .npz/.npy file."
        )
    try:
        splits = load_folder(path, image_size, grayscale) if path.is_dir() else _load_file(path, image_size, grayscale)
    except PermissionError as err:
        raise DataError(f"cannot read {path} ({one_line(err)}); expected readable files.") from None
    if grayscale:  # folders were read in grayscale; colour arrays are converted here
        splits = {k: (x if isinstance(x, LazyImages) else to_grayscale(x), y) for k, (x, y) in splits.items()}
    if image_size is not None:  # a lazy folder resizes each image as it reads it
        splits = {k: (x if isinstance(x, LazyImages) else resize(x, image_size), y) for k, (x, y) in splits.items()}
    return splits


def _user_data(path: Path, splits: dict[str, Split]) -> dict[str, ImageData]:
    if len(splits) == 1:
        images, labels = splits["train"]
        return {"train": ImageData(images, labels, str(path))}
    return {k: ImageData(x, y, f"{path}:{k}") for k, (x, y) in splits.items()}


def _builtin_data(name: str, home: Path | None, log: Log) -> dict[str, ImageData]:
    arrays = cached_arrays(name, home, log)
    return {
        "train": ImageData(arrays["x_train"], arrays["y_train"], f"{name}:train"),
        "test": ImageData(arrays["x_test"], arrays["y_test"], f"{name}:test"),
    }


def _all_splits(source: str | Path, image_size: int | None, home: Path | None, log: Log,
                grayscale: bool = False) -> dict[str, ImageData]:
    check_image_size(image_size)
    name = builtin_name(source)
    if name is None:
        path = Path(source).expanduser()
        return _user_data(path, _load_user(path, image_size, grayscale))
    data = _builtin_data(name, home, log)
    if image_size is None:
        return data
    return {k: ImageData(resize(d.images, image_size), d.labels, d.name) for k, d in data.items()}


def load(
    source: str | Path,
    split: str = "train",
    image_size: int | None = None,
    home: Path | None = None,
    *,
    log: Log = print,
    grayscale: bool = False,
) -> ImageData:
    """Load one split of a built-in dataset or of user data.

    Parameters
    ----------
    source : str or Path
        ``"mnist"``, ``"fashion-mnist"`` (fetched and cached on first use),
        a folder of IDX files, a folder of PNG/JPEG images (sub-folder
        names become labels), a ``.npz``, a ``.npy`` or a single image.
        A ``str`` equal to a built-in name always means the built-in
        dataset; write ``./mnist`` for a folder of that name.
    split : {"train", "test"}
        Which split to return.
    image_size : int, optional
        Resize every image to ``image_size`` x ``image_size`` (bilinear).
    home : Path, optional
        Cache folder for built-in datasets (default :func:`mixvae_home`).
    log : callable, optional
        Receives progress messages when a built-in dataset is fetched.
    grayscale : bool
        Convert colour images to grayscale (Pillow's luma, see
        :func:`mixvae.data.arrays.to_grayscale`); by default colour is kept
        and images are ``(N, H, W, 3)``.

    Returns
    -------
    ImageData
        The requested split.

    Raises
    ------
    DataError
        On any bad input, or when a built-in dataset cannot be fetched.
    """
    if split not in ("train", "test"):
        raise DataError(f"split must be 'train' or 'test', got {split!r}.")
    data = _all_splits(source, image_size, home, log, grayscale)
    if split not in data:
        raise DataError(f"{source} has no test split; expected IDX files with a t10k prefix or a .npz with x_test.")
    return data[split]


def load_split_pair(
    source: str | Path,
    image_size: int | None = None,
    home: Path | None = None,
    *,
    log: Log = print,
    grayscale: bool = False,
) -> tuple[ImageData, ImageData | None]:
    """Load the train split and, when the source has one, the test split.

    Parameters
    ----------
    source, image_size, home, log, grayscale
        As in :func:`load`.

    Returns
    -------
    tuple of ImageData and (ImageData or None)
        ``(train, test)``; ``test`` is ``None`` for user data without a
        test split.
    """
    data = _all_splits(source, image_size, home, log, grayscale)
    return data["train"], data.get("test")
