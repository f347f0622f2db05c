"""``mixvae serve``: every page and answer against the model computed directly, the refusals
(size, pixels, non-images, shapes, paths), concurrent requests, the map's cache, a saved estimator."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("flask")

from mixvae.app import Explorer, create_app, make_server
from mixvae.app.views import PER_PAGE
from mixvae.estimator import MixtureVAE
from mixvae.runfolder import MAP_FILE, ROUTING_FILE

from conftest import blobs
from test_assign import CLASSES, png_folder, train_tiny


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("app")
    folder, files = png_folder(root)
    run = train_tiny(folder, root / "run")
    from mixvae.cli import main

    assert main(["evaluate", str(run)]) == 0
    explorer = Explorer.open(run, log=lambda m: None)
    return explorer, create_app(explorer).test_client(), folder, files


def png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def post_file(client, data: bytes, name: str = "x.png"):
    return client.post("/api/route", data={"image": (io.BytesIO(data), name)}, content_type="multipart/form-data")


def decoded(response) -> np.ndarray:
    assert response.status_code == 200 and response.mimetype == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.data)))


@pytest.mark.parametrize("url", ["/", "/expert/0", "/try", "/map", "/outliers", "/training",
                                 "/static/app.js", "/static/app.css", "/vendor/plotly.min.js"])
def test_every_page_answers(served, url):
    _, client, _, _ = served
    r = client.get(url)
    assert r.status_code == 200 and len(r.data) > 100
    assert b"http://" not in r.data[:5000] or url.startswith("/vendor")  # nothing to fetch from elsewhere


def test_clusters_and_expert_pages_list_members_by_probability(served):
    ex, client, _, files = served
    model = MixtureVAE.load(ex.run)
    images = np.stack([np.asarray(Image.open(f).convert("L")) for f in files])
    probs = model.predict_proba(images)  # independent of the app
    page = client.get("/").get_data(as_text=True)
    for k in range(ex.n_experts):
        members = np.flatnonzero(probs.argmax(1) == k)
        assert f'<tr id="expert-{k}">\n  <td><a class="expert-link" href="/expert/{k}">expert {k}</a>' in page
        if len(members):
            row = page.split(f'<tr id="expert-{k}">')[1].split("</tr>")[0]
            assert f"<td>{len(members)}</td>" in row
            best = members[np.argmax(probs[members, k])]
            typical = re.findall(r'src="/image/(\d+)\.png"', row)
            assert int(typical[0]) == best
            shown = []
            for page_no in range(1, 1 + -(-len(members) // PER_PAGE)):  # every page, in order
                expert = client.get(f"/expert/{k}?page={page_no}").get_data(as_text=True)
                shown += [int(i) for i in re.findall(r'src="/image/(\d+)\.png"', expert)]
            assert sorted(shown) == sorted(members.tolist())
            assert np.all(np.diff(probs[shown, k]) <= 1e-6)
    matched = json.loads((ex.run / "eval.json").read_text())["train"]["matched_class"]
    assert f"class {CLASSES[matched[0]]}" in page  # folder names, not indices


def test_images_and_routing_match_the_model(served):
    ex, client, _, files = served
    image = np.asarray(Image.open(files[5]).convert("L"))
    assert np.array_equal(decoded(client.get("/image/5.png")), image)
    answer = post_file(client, files[5].read_bytes()).get_json()
    model = MixtureVAE.load(ex.run)
    np.testing.assert_allclose(answer["probabilities"], model.predict_proba(image[None])[0], atol=1e-6)
    assert answer["expert"] == int(model.predict(image[None])[0])
    from mixvae.assign import IW_SAMPLES
    from mixvae.inference import log_likelihood

    bound = log_likelihood(model.module_, image[None], IW_SAMPLES)[0]  # as mixvae assign scores it
    assert answer["outlier_score"] == pytest.approx(-bound, abs=1e-4)
    assert len(answer["reconstructions"]) == ex.n_experts
    # the same image as pixels routes the same way
    same = client.post("/api/route", json={"pixels": image.tolist()}).get_json()
    assert same["probabilities"] == answer["probabilities"]


def test_decode_and_samples_follow_the_sliders(served):
    ex, client, _, _ = served
    L = ex.latent_dim
    z = np.linspace(-1, 1, L)
    got = decoded(client.get("/decode/1.png?z=" + ",".join(f"{v:g}" for v in z)))
    with torch.no_grad():
        mean = ex.module.decode(torch.tensor(z, dtype=torch.float32).expand(ex.n_experts, 1, L))[1, 0]
    expected = (mean.clamp(0, 1) * 255).round().to(torch.uint8).numpy().reshape(ex.shape)
    assert np.array_equal(got, expected)
    assert not np.array_equal(got, decoded(client.get("/decode/1.png")))
    zero = decoded(client.get("/decode/1.png"))  # z = 0 ...
    assert np.array_equal(decoded(client.get("/sample/1/5.png?t=0")), zero)  # ... is every sample at temperature 0
    assert not np.array_equal(decoded(client.get("/sample/1/5.png?t=1")), decoded(client.get("/sample/1/6.png?t=1")))


@pytest.mark.parametrize("body, status, words", [
    (b"", 400, "empty"),
    (b"this is not an image", 400, "not an image"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, 400, "not an image"),
])
def test_bad_uploads_get_4xx_and_the_server_keeps_serving(served, body, status, words):
    _, client, _, _ = served
    r = post_file(client, body)
    assert r.status_code == status and words in r.get_json()["error"]
    assert client.get("/").status_code == 200


def test_limits_on_bytes_pixels_formats_and_shapes(served):
    ex, client, _, _ = served
    bomb = io.BytesIO()
    Image.new("1", (5000, 5000)).save(bomb, format="PNG")  # 25 million pixels in a few kB
    r = post_file(client, bomb.getvalue())
    assert r.status_code == 413 and "pixels" in r.get_json()["error"]
    r = post_file(client, b"\0" * (5 * 1024 * 1024))
    assert r.status_code == 413 and "limit" in r.get_json()["error"]
    tiff = io.BytesIO()
    Image.new("L", (8, 8)).save(tiff, format="TIFF")
    assert post_file(client, tiff.getvalue()).status_code == 415
    r = client.post("/api/route", json={"pixels": [[0] * 8] * 7})
    assert r.status_code == 400 and "shape" in r.get_json()["error"]
    assert client.post("/api/route", json={"pixels": [[300] * 8] * 8}).status_code == 400
    assert client.get("/decode/0.png?z=1,2").status_code == 400
    assert client.get("/decode/0.png?z=" + ",".join(["nan"] * ex.latent_dim)).status_code == 400
    assert client.get("/sample/0/1.png?t=99").status_code == 400
    assert client.get("/expert/0?page=999").status_code == 400
    assert client.get("/").status_code == 200


@pytest.mark.parametrize("url", ["/figure/config.yaml", "/figure/..%2fconfig.yaml", "/figure/%2e%2e%2fmodel.safetensors",
                                 "/static/../config.yaml", "/static/..%2f..%2fapp%2f__init__.py", "/image/-1.png",
                                 "/image/100000.png", "/expert/99", "/api/image/100000", "/../../etc/passwd",
                                 "/figure/curves.png/../../config.yaml"])
def test_no_parameter_reaches_the_filesystem(served, url):
    _, client, _, _ = served
    assert client.get(url).status_code == 404


def test_concurrent_requests_get_the_answers_of_sequential_ones(served):
    ex, _, _, _ = served
    server = make_server(create_app(ex), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    urls = [f"{base}/decode/{k % ex.n_experts}.png?z={','.join(['0.5'] * ex.latent_dim)}" for k in range(8)]
    urls += [f"{base}/sample/{k % ex.n_experts}/{k}.png?t=0.7" for k in range(8)] + [f"{base}/image/{k}.png" for k in range(8)]
    try:
        def get(url):
            with urllib.request.urlopen(url, timeout=30) as r:
                return r.read()

        sequential = [get(u) for u in urls]
        with ThreadPoolExecutor(8) as pool:
            for _ in range(3):
                assert list(pool.map(get, urls)) == sequential
    finally:
        server.shutdown()
        server.server_close()


def test_map_and_routing_are_computed_once_and_kept_in_the_run(served, monkeypatch):
    ex, client, _, _ = served
    data = client.get("/api/map").get_json()
    assert len(data["x"]) == len(data["expert"]) == len(ex.sources)
    assert data["expert"] == ex.assigned.expert.tolist()
    assert (ex.run / MAP_FILE).exists() and (ex.run / ROUTING_FILE).exists()

    def refuse(*args, **kwargs):
        raise AssertionError("computed again")

    monkeypatch.setattr("mixvae.app.explorer.embed", refuse)
    monkeypatch.setattr("mixvae.app.explorer.assign", refuse)
    fresh = Explorer.open(ex.run, log=lambda m: None)  # routing and map read back from the run folder
    for key in ("expert", "probability", "runner_up", "outlier_score"):
        np.testing.assert_array_equal(getattr(fresh.assigned, key), getattr(ex.assigned, key))
    np.testing.assert_allclose(fresh.map(), np.c_[data["x"], data["y"]], atol=1e-4)  # read back, not recomputed
    info = client.get("/api/image/3").get_json()
    assert info["expert"] == data["expert"][3] and info["source"] == ex.sources[3]


def test_a_saved_estimator_is_served(tmp_path):
    x, _ = blobs(n_per=30)
    model = MixtureVAE(n_components=3, preset="seed", max_epochs=1, random_state=0).fit(x)
    folder = model.save(tmp_path / "est")
    ex = Explorer.open(folder, log=lambda m: None)
    client = create_app(ex).test_client()
    for url in ("/", "/expert/2", "/try", "/map", "/outliers", "/training", "/decode/0.png", "/sample/0/0.png"):
        assert client.get(url).status_code == 200, url
    answer = post_file(client, png(x[0])).get_json()
    np.testing.assert_allclose(answer["probabilities"], model.predict_proba(x[:1])[0], atol=1e-6)
    assert client.get("/api/map").get_json()["x"] == []


def test_serve_command(served, tmp_path):
    ex, _, _, _ = served
    proc = subprocess.Popen([sys.executable, "-m", "mixvae", "serve", str(ex.run), "--port", "0"],
                            stderr=subprocess.PIPE, text=True)
    try:
        url = None
        for line in proc.stderr:  # type: ignore[union-attr]
            found = re.search(r"at (http://127\.0\.0\.1:\d+/)", line)
            if found:
                url = found.group(1)
                break
        assert url, "the server did not say where it listens"
        with urllib.request.urlopen(url + "expert/0", timeout=30) as r:
            assert r.status == 200
        port = int(url.rsplit(":", 1)[1].strip("/"))
        busy = subprocess.run([sys.executable, "-m", "mixvae", "serve", str(ex.run), "--port", str(port)],
                              capture_output=True, text=True, timeout=120, check=False)
        assert busy.returncode == 2 and busy.stderr.startswith("mixvae: error: cannot listen")
        assert busy.stderr.count("\n") == 1
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    missing = subprocess.run([sys.executable, "-m", "mixvae", "serve", str(tmp_path / "nothing")],
                             capture_output=True, text=True, timeout=120, check=False)
    assert missing.returncode == 2 and missing.stderr.startswith("mixvae: error: ")


def test_a_labelled_array_gives_the_map_its_classes_and_the_experts_their_names(tmp_path):
    torch.manual_seed(0)
    x, y = blobs(n_per=30, k=4)
    np.savez(tmp_path / "blobs.npz", x_train=x, y_train=y + 3)  # labels 3..6: not the experts' numbers
    run = train_tiny(tmp_path / "blobs.npz", tmp_path / "run")
    ex = Explorer.open(run, log=lambda m: None)
    assert ex.classes == [str(v) for v in (y + 3).tolist()]
    data = create_app(ex).test_client().get("/api/map").get_json()
    assert data["label"] == ex.classes and data["labels"] == ["3", "4", "5", "6"]
    for k in range(ex.n_experts):  # before any evaluation: each expert's commonest label, shown only
        members = [ex.classes[i] for i in ex.members(k)]
        assert ex.matched(k) == (max(sorted(set(members)), key=members.count) if members else "-")
    np.savez(tmp_path / "plain.npz", x_train=x)  # no labels: no classes, no names
    bare = Explorer.open(train_tiny(tmp_path / "plain.npz", tmp_path / "bare"), log=lambda m: None)
    assert bare.classes == [] and create_app(bare).test_client().get("/api/map").get_json()["labels"] == []
