"""``mixvae report RUN``: a self-contained page whose every figure renders in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from mixvae.cli import main
from mixvae.figures import FIGURES

from conftest import blobs

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# appended to a test-only copy of the page: once everything has loaded, write what rendered into the DOM
PROBE = """<script>window.addEventListener("load", () => {
  const pre = document.createElement("pre"); pre.id = "probe";
  pre.textContent = JSON.stringify([...document.images].map(i => [i.alt, i.complete, i.naturalWidth]));
  document.body.appendChild(pre);
});</script>"""


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    x, y = blobs(n_per=30)
    xt, yt = blobs(n_per=10, seed=1)
    np.savez(root / "blobs.npz", x_train=x, y_train=y, x_test=xt, y_test=yt)
    out = root / "run"
    assert main(["train", "--data", str(root / "blobs.npz"), "--preset", "seed", "--experts", "4", "--epochs", "2",
                 "--batch-size", "40", "--set", "model.hidden=[16]", "--set", "model.manager_hidden=[16]",
                 "--out", str(out), "--quiet"]) == 0
    (out / "curves.png").unlink()  # report redraws missing figures
    assert main(["report", str(out)]) == 0
    return out


def test_report_is_self_contained(run):
    page = (run / "report.html").read_text()
    assert (run / "eval.json").exists()  # report evaluated the run, which had no eval.json
    srcs = re.findall(r'<img[^>]* src="([^"]+)"', page)
    assert len(srcs) == len(FIGURES) and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r'(src|href)="(https?:|file:|//)', page)  # nothing to fetch: opens offline
    acc = json.loads((run / "eval.json").read_text())["test"]["acc"]
    assert f"{acc:.4f}" in page and "test ACC" in page
    assert "latent_dim" in page  # the configuration


def _chromium(*args: str, timeout: int = 60) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.browser
@pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason=f"{CHROMIUM} is missing (apt-get install chromium)")
def test_report_renders_in_chromium(run, tmp_path):
    probe = tmp_path / "probe.html"
    probe.write_text((run / "report.html").read_text().replace("</body>", PROBE + "</body>"))
    dom = _chromium("--dump-dom", probe.as_uri()).stdout
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.DOTALL)
    assert found, "the page's script did not run"
    images = json.loads(found.group(1).replace("&quot;", '"'))
    assert len(images) == len(FIGURES)
    assert all(complete and width > 0 for _, complete, width in images), images
    acc = json.loads((run / "eval.json").read_text())["test"]["acc"]
    assert f"{acc:.4f}" in dom
    shot = run / "report.png"
    _chromium(f"--screenshot={shot}", "--window-size=1200,2000", (run / "report.html").as_uri())
    assert shot.exists() and shot.stat().st_size > 10_000
