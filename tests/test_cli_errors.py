"""Bad input on the command line: exit status 2, one line on stderr saying what was wrong and what
was expected, no traceback, and every file already in the run folder left as it was."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from PIL import Image

from mixvae.cli import main

from conftest import blobs
from test_data import file_contents

# A tiny model, so that the few runs that do train take a second or two.
TINY = ["--preset", "seed", "--experts", "4", "--batch-size", "20", "--set", "model.hidden=[16]",
        "--set", "model.manager_hidden=[16]", "--set", "model.latent_dim=2", "--quiet"]


def digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder``, by relative path."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str], code: int = 2) -> str:
    """Run the CLI in this process; check the exit status and that stderr is one line, no traceback."""
    got = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert got == code, err
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("mixvae: error: "), err
    return lines[0]


def write_png(path: Path, size: tuple[int, int] = (8, 8)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size, 128, np.uint8)).save(path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished one-epoch run on 8x8 blobs; tests that change it work on a copy."""
    root = tmp_path_factory.mktemp("trained")
    x, _ = blobs(n_per=25, k=4)
    np.savez(root / "blobs.npz", x_train=x)
    assert main(["train", "--data", str(root / "blobs.npz"), "--out", str(root / "run"), "--epochs", "1",
                 *TINY]) == 0
    return root / "run"


@pytest.fixture
def run_copy(trained: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained, tmp_path / "run"))


# ------------------------------------------------------------------ bad data for `mixvae train`


def _png_folder(tmp: Path, extra: Callable[[Path], None]) -> Path:
    folder = tmp / "images"
    for i in range(6):
        write_png(folder / f"{i}.png")
    extra(folder)
    return folder


def _corrupt_folder(tmp: Path) -> Path:
    folder = tmp / "images"
    folder.mkdir()
    for name in ("bad.png", "bad2.png"):
        (folder / name).write_bytes(b"\x89PNG\r\n\x1a\nrubbish")
    return folder


def _npz(tmp: Path, **arrays: np.ndarray) -> Path:
    np.savez(tmp / "data.npz", **arrays)
    return tmp / "data.npz"


def _truncated_npz(tmp: Path) -> Path:
    path = _npz(tmp, x_train=blobs(n_per=5)[0])
    path.write_bytes(path.read_bytes()[:300])
    return path


def _text_folder(tmp: Path) -> Path:
    (tmp / "notes").mkdir()
    (tmp / "notes" / "a.txt").write_text("not an image")
    (tmp / "notes" / "b.csv").write_text("1,2,3")
    return tmp / "notes"


def _floats(value: float) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        x = np.full((20, 8, 8), 0.5, np.float32)
        x[3, 2, 1] = value
        return _npz(tmp, x_train=x)

    return make


BAD_DATA = {
    "missing path": (lambda t: t / "nothere.npz", "does not exist"),
    "empty folder": (lambda t: (t / "empty").mkdir() or t / "empty", "empty|no image"),
    "non-image files": (_text_folder, "no image|expected"),
    # one corrupt file is skipped with a warning (tests/test_app_guard.py); none readable is an error
    "corrupt pngs": (lambda t: _corrupt_folder(t), "none of the 2 image files .* can be read.*bad"),
    "truncated npz": (_truncated_npz, "intact .npz"),
    "npz without keys": (lambda t: _npz(t, pixels=blobs(n_per=5)[0]), "keys"),
    "nan": (_floats(np.nan), "NaN"),
    "inf": (_floats(np.inf), "NaN or inf"),
    "rank 1": (lambda t: _npz(t, x_train=np.zeros(64, np.uint8)), "shape"),
    "rank 5": (lambda t: _npz(t, x_train=np.zeros((20, 8, 8, 3, 2), np.uint8)), "shape"),
    "not square": (lambda t: _npz(t, x_train=np.zeros((20, 60), np.uint8)), "perfect square"),
    "floats above 1": (_floats(2.0), r"\[0, 1\]"),
    "floats below 0": (_floats(-0.5), r"\[0, 1\]"),
    "mixed sizes": (lambda t: _png_folder(t, lambda f: write_png(f / "big.png", (9, 9))), "size"),
    "fewer images than experts": (lambda t: _npz(t, x_train=blobs(n_per=1, k=3)[0]), "fewer than the 4 experts"),
}


@pytest.mark.parametrize("case", list(BAD_DATA))
def test_bad_data_is_one_line_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 case: str) -> None:
    make, pattern = BAD_DATA[case]
    data = make(tmp_path)
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    before = digest(out)
    line = one_line_error(capsys, ["train", "--data", str(data), "--out", str(out), "--epochs", "1", *TINY])
    assert re.search(pattern, line), line
    assert digest(out) == before


# ------------------------------------------------------------------ bad options


BAD_OPTIONS = {
    "unknown preset": (["--preset", "nope"], "preset='nope'.*expected one of"),
    "unknown config key": (["--set", "model.nope=1"], "model.nope is not an option"),
    "bad config value": (["--set", "model.latent_dim=two"], "latent_dim"),
    "unknown flag": (["--bogus"], "unrecognized arguments: --bogus"),
    "not a number": (["--lr", "fast"], "invalid float value"),
    "K = 0": (["--experts", "0"], "--experts 0 is invalid: expected an integer >= 1"),
    "K < 0": (["--experts", "-3"], "--experts -3 is invalid"),
    "lr = 0": (["--lr", "0"], "--lr 0.0 is invalid: expected a number > 0"),
    "lr < 0": (["--lr", "-0.1"], "--lr -0.1 is invalid"),
    "batch size 0": (["--batch-size", "0"], "--batch-size 0 is invalid"),
    "batch size < 0": (["--batch-size", "-5"], "--batch-size -5 is invalid"),
    "epochs 0": (["--epochs", "0"], "--epochs 0 is invalid"),
}


@pytest.mark.parametrize("case", list(BAD_OPTIONS))
def test_bad_option_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    extra, pattern = BAD_OPTIONS[case]
    x, _ = blobs(n_per=5)
    data = _npz(tmp_path, x_train=x)
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    before = digest(out)
    # the bad option comes last, so that it overrides TINY's value
    line = one_line_error(capsys, ["train", "--data", str(data), "--out", str(out), *TINY, *extra])
    assert re.search(pattern, line), line
    assert digest(out) == before


def test_out_folder_with_another_run_is_refused(run_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = yaml.safe_load((run_copy / "config.yaml").read_text())
    before = digest(run_copy)
    line = one_line_error(capsys, ["train", "--data", cfg["data"], "--out", str(run_copy), "--epochs", "2", *TINY])
    assert "already holds a different run" in line and "--resume" in line and "--overwrite" in line
    line = one_line_error(capsys, ["train", "--data", cfg["data"], "--out", str(run_copy), "--epochs", "1", *TINY])
    assert "already holds this run" in line
    assert digest(run_copy) == before
    assert main(["train", "--data", cfg["data"], "--out", str(run_copy), "--epochs", "1", "--overwrite",
                 *TINY]) == 0


# ------------------------------------------------------------------ bad checkpoints


def _garbage(path: Path) -> None:
    path.write_bytes(b"this is not a checkpoint" * 10)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _other_config(run: Path) -> None:
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["model"]["latent_dim"] = 3
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))


DAMAGE = {
    "corrupt": (_garbage, "corrupt or truncated"),
    "truncated": (_truncate, "corrupt or truncated"),
    "other config": (None, "another model configuration"),
}


def _damage(run: Path, how: str, files: list[Path]) -> str:
    hurt, pattern = DAMAGE[how]
    if hurt is None:
        _other_config(run)
    else:
        for f in files:
            hurt(f)
    return pattern


@pytest.mark.parametrize("how", list(DAMAGE))
@pytest.mark.parametrize("command", ["evaluate", "sample", "predict"])
def test_bad_weights_are_refused(run_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 command: str, how: str) -> None:
    pattern = _damage(run_copy, how, [run_copy / "model.safetensors"])
    write_png(tmp_path / "one.png")
    extra = [str(tmp_path / "one.png")] if command == "predict" else []
    before = digest(run_copy)
    line = one_line_error(capsys, [command, str(run_copy), *extra])
    assert pattern in line
    assert digest(run_copy) == before


@pytest.mark.parametrize("how", list(DAMAGE))
def test_bad_checkpoints_are_refused_on_resume(run_copy: Path, capsys: pytest.CaptureFixture[str],
                                               how: str) -> None:
    pattern = _damage(run_copy, how, sorted((run_copy / "checkpoints").glob("step-*.pt")))
    before = digest(run_copy)
    line = one_line_error(capsys, ["train", "--resume", str(run_copy), "--quiet"])
    assert pattern in line
    assert digest(run_copy) == before


def test_resume_without_checkpoints(run_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.rmtree(run_copy / "checkpoints")
    before = digest(run_copy)
    assert "holds no checkpoint to resume from" in one_line_error(capsys, ["train", "--resume", str(run_copy)])
    assert digest(run_copy) == before
    (tmp_path / "empty").mkdir()
    line = one_line_error(capsys, ["train", "--resume", str(tmp_path / "empty")])
    assert "expected a run folder made by 'mixvae train'" in line
    assert digest(tmp_path / "empty") == {}


def test_resume_refuses_changed_settings(run_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = digest(run_copy)
    line = one_line_error(capsys, ["train", "--resume", str(run_copy), "--lr", "0.5"])
    assert "only --epochs may be changed" in line
    assert digest(run_copy) == before


# ------------------------------------------------------------------ fuzzed data files


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=file_contents())
def test_fuzzed_data_file_is_one_line(capsys: pytest.CaptureFixture[str], case: tuple[str, bytes]) -> None:
    """Random, truncated or bit-flipped .npz/.npy/PNG/IDX files (two 3x3 images when intact, too
    few for four experts): always exit 2 with one line."""
    name, raw = case
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(raw)
        one_line_error(capsys, ["train", "--data", str(path), "--out", str(Path(tmp) / "run"), *TINY])
        assert not (Path(tmp) / "run").exists()


# ------------------------------------------------------------------ the real exit status


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "mixvae", *argv], capture_output=True, text=True, env=env,
                          timeout=300, check=False)  # the tests check the exit status


def _one_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and "Traceback" not in done.stderr and len(lines) == 1, done.stderr
    return lines[0]


def test_subprocess_exit_status_for_an_unknown_option() -> None:
    assert "unrecognized arguments: --bogus" in _one_line(_cli("train", "--bogus"))


def test_subprocess_exit_status_for_a_truncated_npz(tmp_path: Path) -> None:
    data = _truncated_npz(tmp_path)
    line = _one_line(_cli("train", "--data", str(data), "--out", str(tmp_path / "run"), *TINY))
    assert "intact .npz" in line and not (tmp_path / "run").exists()
