"""The released wheel: built from this repository offline, installed alone into a fresh virtual environment.

The fresh environment gets the development environment's third-party packages through a ``.pth``
file that names the development site-packages. Python adds the folders a ``.pth`` file names to
``sys.path`` without processing the ``.pth`` files inside them, so the development environment's
editable install of mixvae (itself a ``.pth`` file) stays inactive there: ``import mixvae`` must
find the installed wheel, and a file missing from the wheel fails these tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parents[1]
# what `pip wheel` reads: the package and the files pyproject.toml names (readme, license-files)
BUILD_INPUTS = ("pyproject.toml", "README.md", "LICENSE", "src")

CHECK_INSTALLED = r"""
import importlib, importlib.metadata, json, pkgutil, sys
from pathlib import Path

import mixvae

modules = sorted(m.name for m in pkgutil.walk_packages(mixvae.__path__, "mixvae."))
imported = []
for name in modules:
    if name.rpartition(".")[2] != "__main__":  # `python -m` entry points run the CLI when imported
        importlib.import_module(name)
        imported.append(name)
dist = importlib.metadata.distribution("mixvae")
print(json.dumps({
    "file": mixvae.__file__,
    "py_typed": (Path(mixvae.__file__).parent / "py.typed").is_file(),
    "modules": modules,
    "imported": imported,
    "dist_at": str(dist.locate_file("")),
    "version": dist.version,
}))
"""


def _run(cmd: list[str | Path], **kw) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300, check=False, **kw)
    assert done.returncode == 0, f"{cmd} exited {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built offline from a copy of the build inputs.

    The copy keeps setuptools' build/ and *.egg-info out of the shared working tree, and keeps a
    stale build/lib (modules deleted since an earlier build) out of the wheel.
    """
    src = tmp_path_factory.mktemp("source")
    for name in BUILD_INPUTS:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", out, src])
    (found,) = out.glob("mixvae-*.whl")
    return found


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A fresh virtual environment with the wheel installed, and the environment to run it in."""
    root = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", "--without-pip", root])
    python = root / "bin" / "python"
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    dev_site = sysconfig.get_paths()["purelib"]
    # the dev environment's packages, pip included, come after the fresh site-packages
    (site / "dev_site_packages.pth").write_text(dev_site + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env["PATH"] = f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(root)
    _run([python, "-m", "pip", "install", "--no-deps", "--no-index", wheel], env=env, cwd=root)
    return root, env


def test_the_wheel_holds_the_licence_and_the_typed_marker(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = z.read(metadata).decode()
        licences = [n for n in names if ".dist-info/" in n and Path(n).name == "LICENSE"]
        assert licences, names
        assert z.read(licences[0]).decode() == (ROOT / "LICENSE").read_text()
    assert "mixvae/py.typed" in names
    assert "License-Expression: MIT" in meta and "License-File: LICENSE" in meta
    assert not [n for n in names if "__pycache__" in n or n.startswith("tests/")]


def test_the_wheel_holds_the_apps_templates_and_scripts(wheel):
    """mixvae serve needs its pages, script and style installed beside its code."""
    app = ROOT / "src" / "mixvae" / "app"
    files = sorted(p.relative_to(ROOT / "src").as_posix() for d in ("templates", "static") for p in (app / d).iterdir())
    assert files
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        assert [f for f in files if f not in names] == []
        assert z.read("mixvae/app/static/app.js") == (app / "static" / "app.js").read_bytes()


def test_mixvae_imports_from_the_installed_wheel(venv):
    root, env = venv
    done = _run([root / "bin" / "python", "-c", CHECK_INSTALLED], env=env, cwd=root)
    found = json.loads(done.stdout.strip().splitlines()[-1])
    installed = Path(found["file"]).resolve()
    assert installed.is_relative_to(root.resolve()), found["file"]
    assert not installed.is_relative_to((ROOT / "src").resolve())
    assert Path(found["dist_at"]).resolve().is_relative_to(root.resolve())
    assert found["py_typed"]
    for package in ("mixvae.cli", "mixvae.config", "mixvae.data", "mixvae.cli.run", "mixvae.data.formats"):
        assert package in found["imported"], found["modules"]
    expected = sorted(
        ".".join(p.relative_to(ROOT / "src").with_suffix("").parts).removesuffix(".__init__")
        for p in (ROOT / "src" / "mixvae").rglob("*.py")
    )
    assert found["modules"] == [m for m in expected if m != "mixvae"]  # nothing missing from the wheel


@pytest.mark.parametrize("args", [["--help"], ["presets"]], ids=["help", "presets"])
def test_the_console_script_runs(venv, args):
    root, env = venv
    done = _run([root / "bin" / "mixvae", *args], env=env, cwd=root)
    assert done.stdout.strip()
