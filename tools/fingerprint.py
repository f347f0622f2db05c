"""Behaviour fingerprint: run four fixed workloads and write every number they produce to a JSON file.

Run it at two commits, with the same thread count, and compare the files (`--compare A B`): a
refactor that keeps behaviour gives identical files. The workloads:

- ``mnist``: ``mixvae train --data mnist --seed 0`` then ``mixvae evaluate`` (the default preset);
- ``colour``: a folder of colour PNG images (three classes by palette and shape, made here with
  NumPy from a fixed seed), trained for a few epochs, then evaluated, predicted and assigned;
- ``csv``: scikit-learn's 8x8 digits as a ``.csv`` table with a label column, trained and evaluated,
  sampled and assigned;
- ``iris``: ``MixtureVAE(random_state=0).fit`` on iris: ``predict_proba``, ``score_samples``,
  ``sample``.

Usage: python tools/fingerprint.py --out FILE.json [--skip mnist] [--threads 1]
       python tools/fingerprint.py --compare A.json B.json
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def _digest(array) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


def _mixvae(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "mixvae", *args], check=True)


def _output(tmp: Path, *args: str) -> str:
    """The digest of a command's standard output, the temporary folder's name left out."""
    out = subprocess.run([sys.executable, "-m", "mixvae", *args], check=True, capture_output=True, text=True).stdout
    return hashlib.sha256(out.replace(str(tmp), "TMP").encode()).hexdigest()[:16]


def _eval(run: Path) -> dict:
    return json.loads((run / "eval.json").read_text())


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _weights_digest(path: Path) -> str:
    """The digest of a weights file's tensors (its metadata names the run's data path: left out)."""
    from safetensors.numpy import load_file

    tensors = load_file(str(path))
    h = hashlib.sha256()
    for key in sorted(tensors):
        h.update(key.encode() + np.ascontiguousarray(tensors[key]).tobytes())
    return h.hexdigest()[:16]


def _colour_folder(root: Path) -> None:
    from PIL import Image
    rng = np.random.default_rng(0)
    palettes = [(200, 40, 40), (40, 160, 60), (50, 70, 210)]
    yy, xx = np.mgrid[:24, :24]
    for c, colour in enumerate(palettes):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(120):
            img = rng.integers(0, 60, size=(24, 24, 3)).astype(np.float64)
            cy, cx, r = rng.integers(7, 17), rng.integers(7, 17), rng.integers(3, 7)
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r if c != 1 else (abs(yy - cy) <= r) & (abs(xx - cx) <= r)
            img[mask] = np.array(colour) * rng.uniform(0.7, 1.0)
            Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(root / f"class{c}" / f"{i:03d}.png")


def run(out: Path, skip: set[str], threads: int) -> dict:
    result: dict = {}
    t = str(threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        if "mnist" not in skip:
            r = tmp_path / "mnist"
            _mixvae("train", "--data", "mnist", "--seed", "0", "--threads", t, "--quiet", "--out", str(r))
            _mixvae("evaluate", str(r))
            result["mnist"] = {"eval": _eval(r), "weights": _weights_digest(r / "model.safetensors")}
        if "colour" not in skip:
            folder = tmp_path / "colour-images"
            _colour_folder(folder)
            r = tmp_path / "colour"
            _mixvae("train", "--data", str(folder), "--experts", "3", "--epochs", "4", "--seed", "0",
                    "--threads", t, "--quiet", "--out", str(r))
            _mixvae("evaluate", str(r), "--iw", "5", "--iw-images", "100")
            iw = _eval(r)
            _mixvae("evaluate", str(r))
            _mixvae("assign", str(r), "--data", str(folder), "--out", str(tmp_path / "colour.csv"), "--quiet")
            _mixvae("sample", str(r), "--per-expert", "4", "--out", str(tmp_path / "colour.png"))
            result["colour"] = {"eval": _eval(r), "eval_iw": iw, "weights": _weights_digest(r / "model.safetensors"),
                                "predict": _output(tmp_path, "predict", str(r), *map(str, sorted(folder.rglob("*.png"))[:5])),
                                "assign": _file_digest(tmp_path / "colour.csv"),
                                "sample": _file_digest(tmp_path / "colour.png")}
        if "csv" not in skip:
            from sklearn.datasets import load_digits
            digits = load_digits()
            table = tmp_path / "digits.csv"
            header = ",".join([f"f{i}" for i in range(64)] + ["digit"])
            rows = np.column_stack([digits.data, digits.target])
            np.savetxt(table, rows, delimiter=",", header=header, comments="", fmt="%g")
            r = tmp_path / "csv"
            _mixvae("train", "--data", str(table), "--label-column", "digit", "--experts", "10", "--epochs", "6",
                    "--seed", "0", "--threads", t, "--quiet", "--out", str(r))
            _mixvae("evaluate", str(r), "--iw", "5", "--iw-images", "100")
            iw = _eval(r)
            _mixvae("evaluate", str(r))
            _mixvae("sample", str(r), "--per-expert", "3", "--out", str(tmp_path / "samples.csv"))
            _mixvae("assign", str(r), "--data", str(table), "--out", str(tmp_path / "digits-assign.csv"), "--quiet")
            result["csv"] = {"eval": _eval(r), "eval_iw": iw, "weights": _weights_digest(r / "model.safetensors"),
                             "predict": _output(tmp_path, "predict", str(r), str(table)),
                             "sample": _file_digest(tmp_path / "samples.csv"),
                             "assign": _file_digest(tmp_path / "digits-assign.csv")}
    if "iris" not in skip:
        import torch
        from sklearn.datasets import load_iris

        from mixvae import MixtureVAE
        torch.set_num_threads(threads)
        x = load_iris().data
        model = MixtureVAE(random_state=0).fit(x)
        result["iris"] = {"proba": _digest(model.predict_proba(x)), "score": float(model.score(x)),
                          "score_samples": _digest(model.score_samples(x)),
                          "sample": _digest(model.sample(5)[0])}
    out.write_text(json.dumps(result, indent=1, sort_keys=True))
    return result


def compare(a: Path, b: Path) -> int:
    left, right = json.loads(a.read_text()), json.loads(b.read_text())
    differ = 0

    def walk(x, y, path):
        nonlocal differ
        if isinstance(x, dict) and isinstance(y, dict):
            for key in sorted(set(x) | set(y)):
                walk(x.get(key), y.get(key), f"{path}.{key}" if path else key)
        elif x != y and path.split(".")[-1] not in ("run", "data"):  # the temporary folders' names
            differ += 1
            print(f"differs: {path}: {x} != {y}")
    walk(left, right, "")
    print("identical" if not differ else f"{differ} values differ")
    return 1 if differ else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path)
    p.add_argument("--skip", nargs="*", default=[], choices=("mnist", "colour", "csv", "iris"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"))
    args = p.parse_args()
    if args.compare:
        return compare(*args.compare)
    if args.out is None:
        p.error("--out is required unless --compare")
    run(args.out, set(args.skip), args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
