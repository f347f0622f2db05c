"""``mixvae serve`` against hostile requests: every one gets a 4xx (or 503 when busy) with a
one-line message, never a 5xx, and the server keeps serving; the app's outlier score is
``assign``'s; a new ``eval.json`` is read without a restart; the map is computed once."""

from __future__ import annotations

import http.client
import json
import struct
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("flask")

from mixvae.app import Explorer, create_app, make_server
from mixvae.app.guard import allowed_host, same_origin
from mixvae.app.images import MAX_UPLOAD_BYTES
from mixvae.assign import assign
from mixvae.cli import main
from mixvae.runfolder import EVAL_FILE

from test_app import png, post_file
from test_assign import png_folder, train_tiny


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("guard")
    folder, files = png_folder(root)
    run = train_tiny(folder, root / "run")
    explorer = Explorer.open(run, log=lambda m: None)
    return explorer, create_app(explorer, ("box.lan",)), folder, files


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height grey pixels, with one empty data chunk: what a
    decompression bomb's first bytes look like (Pillow reads the size from here)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_a_decompression_bomb_gets_413_not_500(guarded) -> None:
    _, app, _, _ = guarded
    answer = post_file(app.test_client(), png_header(20000, 20000))
    assert answer.status_code == 413 and "pixels" in answer.get_json()["error"]


def test_json_nested_thousands_deep_gets_400(guarded) -> None:
    _, app, _, _ = guarded
    body = '{"pixels": ' + "[" * 100_000 + "]" * 100_000 + "}"
    answer = app.test_client().post("/api/route", data=body, content_type="application/json")
    assert answer.status_code == 400 and "pixels" in answer.get_json()["error"]


@pytest.mark.parametrize("host", ["evil.example:8000", "evil.example", "127.0.0.1.evil.example", "[::2]:80", ""])
def test_a_host_that_is_not_the_apps_gets_403(guarded, host: str) -> None:
    _, app, _, _ = guarded
    for url in ("/api/map", "/", "/image/0.png"):
        answer = app.test_client().get(url, headers={"Host": host})
        assert answer.status_code == 403, (host, url)
        assert b"Host" in answer.data


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1:8000", "[::1]:8000", "box.lan:8000", "BOX.LAN"])
def test_the_apps_own_names_are_served(guarded, host: str) -> None:
    _, app, _, _ = guarded
    assert app.test_client().get("/api/map", headers={"Host": host}).status_code == 200


def test_a_post_from_another_sites_page_gets_403(guarded) -> None:
    ex, app, _, _ = guarded
    client = app.test_client()
    image = png(np.zeros(ex.shape, np.uint8))
    for kind in ("text/plain", "application/octet-stream", "image/png"):
        answer = client.post("/api/route", data=image, content_type=kind,
                             headers={"Origin": "http://evil.example"})
        assert answer.status_code == 403, kind
    same = client.post("/api/route", data=image, content_type="image/png", headers={"Origin": "http://localhost"})
    assert same.status_code == 200
    assert client.post("/api/route", data=image, content_type="image/png").status_code == 200  # no Origin: not a page


def test_the_host_and_origin_rules() -> None:
    assert allowed_host("localhost:5000", ()) and allowed_host("[::1]", ()) and not allowed_host(None, ())
    assert allowed_host("my.box:1", ("MY.box",)) and not allowed_host("my.box.evil:1", ("my.box",))
    assert same_origin(None, "localhost:1") and same_origin("http://localhost:1", "localhost:1")
    assert not same_origin("http://localhost:2", "localhost:1") and not same_origin("null", "localhost:1")
    assert not same_origin("file://localhost:1", "localhost:1")


@pytest.fixture(scope="module")
def server(guarded):
    _, app, _, _ = guarded
    srv = make_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv.server_port
    srv.shutdown()
    srv.server_close()


def _post_chunked(port: int, body: bytes, size: int = 65536) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/api/route", body=(body[i:i + size] for i in range(0, len(body), size)),
                     headers={"Content-Type": "image/png"}, encode_chunked=True)
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def test_a_chunked_upload_over_the_limit_gets_413_and_one_within_is_read_whole(guarded, server) -> None:
    ex, _, _, _ = guarded
    status, body = _post_chunked(server, b"\0" * (MAX_UPLOAD_BYTES + 1))
    assert status == 413 and b"over the limit" in body
    image = png(np.full(ex.shape, 200, np.uint8))
    status, body = _post_chunked(server, image + b"\0" * (MAX_UPLOAD_BYTES - len(image)), size=1000)
    assert status == 200, body  # a PNG with trailing bytes, exactly at the limit: read whole
    status, body = _post_chunked(server, image, size=7)
    assert status == 200 and json.loads(body)["expert"] in range(ex.n_experts)


def test_when_every_slot_is_taken_an_upload_gets_503_then_is_served(guarded, monkeypatch) -> None:
    from mixvae.app import guard

    ex, _, _, _ = guarded
    monkeypatch.setattr(guard, "SLOT_WAIT_SECONDS", 0.05)
    monkeypatch.setattr(guard.Slots.__init__, "__defaults__", (1, 0.05))
    app = create_app(ex)
    slots = app.extensions["mixvae.slots"]
    assert slots.take()  # someone else's upload
    image = png(np.zeros(ex.shape, np.uint8))
    busy = app.test_client().post("/api/route", data=image, content_type="image/png")
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "5"
    slots.give()
    assert app.test_client().post("/api/route", data=image, content_type="image/png").status_code == 200
    assert slots.take()  # every request gave its slot back
    slots.give()


def test_the_apps_outlier_score_is_assigns(guarded, tmp_path: Path) -> None:
    ex, app, _, files = guarded
    from mixvae.kinds.images import read_file

    image = read_file(files[3], ex.cfg)
    ours = app.test_client().post("/api/route", data=png(image), content_type="image/png").get_json()
    theirs = assign(ex.module, image[None], ["x"], binarize=ex.cfg.train.binarize)
    assert ours["outlier_score"] == pytest.approx(float(theirs.outlier_score[0]), rel=1e-9)
    assert ex.assigned is not None
    trained = assign(ex.module, ex.images, ex.sources, binarize=ex.cfg.train.binarize)
    np.testing.assert_allclose(ex.assigned.outlier_score, trained.outlier_score, rtol=1e-9)


def test_a_new_evaluation_names_the_classes_without_a_restart(guarded) -> None:
    ex, app, _, _ = guarded
    (ex.run / EVAL_FILE).unlink(missing_ok=True)
    ex.refresh()
    folders = [s.split("/", 1)[0] for s in ex.sources]  # before an evaluation: each expert's commonest sub-folder
    for k in range(ex.n_experts):
        members = [folders[i] for i in ex.members(k)]
        assert ex.matched(k) == (max(sorted(set(members)), key=members.count) if members else "-")
    assert main(["evaluate", str(ex.run)]) == 0
    ex.refresh()
    evaluated = json.loads((ex.run / EVAL_FILE).read_text())
    names = evaluated["class_names"]
    assert [ex.matched(k) for k in range(ex.n_experts)] == [names[c] for c in evaluated["train"]["matched_class"]]
    page = app.test_client().get("/").data.decode()
    assert all(f"{ex.matched(k)}" in page for k in range(ex.n_experts))


def test_the_map_is_computed_once_however_many_ask(guarded, monkeypatch) -> None:
    from mixvae.app import explorer as explorer_module

    ex, _, _, _ = guarded
    calls = []
    real = explorer_module.embed

    def slow_embed(features: np.ndarray, seed: int = 0):
        calls.append(1)
        threading.Event().wait(0.2)
        return real(features, seed)

    monkeypatch.setattr(explorer_module, "embed", slow_embed)
    ex._map = None
    (ex.run / "map.npz").unlink(missing_ok=True)
    maps: list[np.ndarray] = []
    threads = [threading.Thread(target=lambda: maps.append(ex.map())) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(maps) == 3 and all(m is maps[0] for m in maps)


def test_the_server_survives_the_attack_corpus(guarded, server) -> None:
    """Every hostile request above, and a few more, on the real server: no 5xx, still answering."""
    ex, _, _, _ = guarded
    corpus = [
        ("POST", "/api/route", png_header(20000, 20000), {"Content-Type": "image/png"}),
        ("POST", "/api/route", b'{"pixels": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", {"Content-Type": "application/json"}),
        ("GET", "/api/map", b"", {"Host": "evil.example"}),
        ("POST", "/api/route", png(np.zeros(ex.shape, np.uint8)), {"Content-Type": "text/plain",
                                                                     "Origin": "http://evil.example"}),
        ("GET", "/figure/..%2f..%2fconfig.yaml", b"", {}),
        ("GET", "/image/99999999.png", b"", {}),
        ("GET", "/decode/0.png?z=nan", b"", {}),
        ("POST", "/api/route", b"GIF89a" + b"\xff" * 100, {"Content-Type": "image/gif"}),
        ("POST", "/api/route", b"", {"Content-Type": "multipart/form-data; boundary=x"}),
        ("POST", "/api/route", b"\0" * 10, {"Content-Type": "application/json", "Content-Length": "999999999"}),
    ]
    for method, url, body, headers in corpus:
        conn = http.client.HTTPConnection("127.0.0.1", server, timeout=30)
        try:
            conn.request(method, url, body=body or None, headers=headers)
            status = conn.getresponse().status
        except (ConnectionError, http.client.HTTPException):
            status = 0  # the server closed a connection that lied about its length: not an answer, not a crash
        finally:
            conn.close()
        assert status == 0 or 400 <= status < 500, (url, headers, status)
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=30)
    conn.request("GET", "/api/map")
    assert conn.getresponse().status == 200
    conn.close()


def test_links_leading_outside_the_folder_are_skipped_with_a_warning(tmp_path: Path) -> None:
    from PIL import Image

    from mixvae.data import image_files, load

    folder, files = png_folder(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(outside / "secret.png")
    first_class = files[0].parent
    (first_class / "zz-secret.png").symlink_to(outside / "secret.png")
    (folder / "linked").symlink_to(outside, target_is_directory=True)
    (first_class / "zz-inside.png").symlink_to(files[1])  # a link within the folder is an image of it
    with pytest.warns(UserWarning, match=r"link outside it and are skipped"):
        found = image_files(folder)
    assert sorted(found) == sorted([*files, first_class / "zz-inside.png"])
    assert all(f.resolve().is_relative_to(folder.resolve()) for f in found)
    with pytest.warns(UserWarning, match=r"link outside"):
        assert len(load(str(folder)).images) == len(files) + 1


def test_one_unreadable_file_is_reported_and_skipped_by_the_app_and_assign(tmp_path: Path, capsys) -> None:
    torch.manual_seed(0)
    folder, files = png_folder(tmp_path)
    run = train_tiny(folder, tmp_path / "run")
    broken = files[0].parent / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    said: list[str] = []
    ex = Explorer.open(run, log=said.append)
    assert ex.assigned is not None and len(ex.sources) == len(files)
    assert "broken.png" not in " ".join(ex.sources)
    assert any("1 of" in m and "cannot be read" in m and "broken.png" in m for m in said), said
    page = create_app(ex).test_client().get("/").data.decode()
    assert f"{len(files)} images" in page
    out = tmp_path / "assigned.csv"
    assert main(["assign", str(run), "--data", str(folder), "--out", str(out), "--quiet"]) == 0
    rows = out.read_text().splitlines()[1:]
    assert len(rows) == len(files) and not any(r.startswith(("broken", f"{files[0].parent.name}/broken")) for r in rows)
    assert "cannot be read and are skipped" in capsys.readouterr().err


def test_the_map_page_says_the_map_is_being_computed(guarded) -> None:
    ex, app, _, _ = guarded
    ex._map = None
    (ex.run / "map.npz").unlink(missing_ok=True)
    client = app.test_client()
    assert f"computing the map of {len(ex.sources)} images" in client.get("/map").data.decode()
    assert client.get("/api/map").status_code == 200
    ex._map = None  # a new process: the map kept in the run folder is at hand
    assert f"drawing {len(ex.sources)} points" in client.get("/map").data.decode()


def test_an_images_own_page_shows_its_routing_reconstructions_and_neighbours(guarded) -> None:
    import html
    import re

    from mixvae.neighbours import neighbour_graph

    ex, app, _, files = guarded
    client = app.test_client()
    i = 5
    assert "holds no neighbour graph" in client.get(f"/item/{i}").data.decode()
    neighbour_graph(np.asarray(ex.images), 10, 8, "exact", run_dir=ex.run)  # what training keeps in the run folder
    page = client.get(f"/item/{i}")
    assert page.status_code == 200
    text = page.data.decode()
    assert html.escape(ex.sources[i]) in text
    shown = json.loads(html.unescape(re.search(r'data-probabilities="([^"]*)"', text).group(1)))
    from mixvae.kinds.images import read_file

    model_probs = ex.module.predict_proba(torch.from_numpy(read_file(files[i], ex.cfg).reshape(1, -1) / 255.0).float())
    np.testing.assert_allclose(shown, model_probs[0].detach().numpy(), atol=1e-6)
    assert text.count("reconstruction by expert") == ex.n_experts
    graph = np.load(ex.run / "neighbours.npy")
    links = [int(n) for n in re.findall(r'class="thumb" href="/item/(\d+)"', text)]
    assert links == graph[i, :10].tolist()
    assert f"{ex.assigned.outlier_score[i]:.1f}" in text  # the same score as every list shows
    for bad in (-1, len(ex.sources), 10**9):
        assert client.get(f"/item/{bad}").status_code == 404


def test_the_outliers_come_a_page_at_a_time_in_rank_order(guarded) -> None:
    import re

    from mixvae.app.views import PER_PAGE

    ex, app, _, _ = guarded
    client = app.test_client()
    ranked = np.argsort(ex.assigned.outlier_rank, kind="stable")  # every image, the least likely first
    pages = -(-len(ex.sources) // PER_PAGE)
    seen: list[int] = []
    for page in range(1, pages + 1):
        text = client.get(f"/outliers?page={page}").data.decode()
        seen += [int(i) for i in re.findall(r'class="thumb" href="/item/(\d+)"', text)]
        assert f"page {page} of {pages}" in text
    assert seen == ranked.tolist()
    assert client.get(f"/outliers?page={pages + 1}").status_code == 400


def test_search_by_name_and_class_and_export_what_it_finds(guarded, tmp_path: Path) -> None:
    import csv
    import re

    from mixvae.assign import COLUMNS

    ex, app, _, _ = guarded
    client = app.test_client()
    if ex.assigned.matched_class is None:  # the classes come from an evaluation
        assert main(["evaluate", str(ex.run)]) == 0
        ex.refresh()
    by_name = [i for i, s in enumerate(ex.sources) if "img01" in s.lower()]
    text = client.get("/search?q=IMG01").data.decode()
    assert f"{len(by_name)} images found" in text
    assert sorted(int(i) for i in re.findall(r'class="thumb" href="/item/(\d+)"', text)) == sorted(by_name)[:48]
    k = int(ex.assigned.expert[0])
    named = ex.matched(k)
    of_class = [i for i in range(len(ex.sources)) if ex.matched(int(ex.assigned.expert[i])) == named]
    assert f"{len(of_class)} image" in client.get(f"/search?q={named}").data.decode()
    only_k = client.get(f"/search?q=&expert={k}").data.decode()
    assert f"{int((ex.assigned.expert == k).sum())} image" in only_k
    answer = client.get(f"/export.csv?q=img01&expert={k}")
    assert answer.mimetype == "text/csv" and "attachment" in answer.headers["Content-Disposition"]
    rows = list(csv.reader(answer.data.decode().splitlines()))
    assert rows[0] == list(COLUMNS)
    want = [i for i in ex.members(k) if "img01" in ex.sources[i].lower()]
    assert [r[0] for r in rows[1:]] == [ex.sources[i] for i in want]
    assigned_csv = tmp_path / "all.csv"
    assert main(["assign", str(ex.run), "--data", str(guarded[2]), "--out", str(assigned_csv), "--quiet"]) == 0
    by_source = {r[0]: r for r in csv.reader(assigned_csv.read_text().splitlines()[1:])}
    for r in rows[1:]:  # the app's rows are assign's rows
        assert r == by_source[r[0]]
    assert client.get("/search?q=" + "x" * 201).status_code == 400
    assert client.get(f"/export.csv?expert={ex.n_experts}").status_code == 400


def test_search_filters_by_routing_probability_and_outlier_score(guarded) -> None:
    import csv

    ex, app, _, _ = guarded
    a = ex.assigned
    p_min, score_min = float(np.median(a.probability)), float(np.median(a.outlier_score))
    rows = list(csv.reader(app.test_client().get(
        f"/export.csv?q=&p_min={p_min}&score_min={score_min}").data.decode().splitlines()))[1:]
    want = {ex.sources[i] for i in range(len(ex.sources)) if a.probability[i] >= p_min and a.outlier_score[i] >= score_min}
    assert {r[0] for r in rows} == want and 0 < len(want) < len(ex.sources)
    page = app.test_client().get(f"/search?p_min={p_min}&score_min={score_min}").data.decode()
    assert f"{len(want)} image" in page and f'value="{p_min}"' in page
    for bad in ("p_min=2", "p_min=nan", "score_min=inf", "score_min=x"):
        assert app.test_client().get(f"/search?{bad}").status_code == 400, bad


def test_a_selection_is_exported_as_assigns_rows_in_its_order(guarded) -> None:
    import csv

    from mixvae.assign import csv_text

    ex, app, _, _ = guarded
    client = app.test_client()
    ids = [7, 2, 30, 2]
    answer = client.post("/api/export", json={"ids": ids})
    assert answer.status_code == 200 and answer.mimetype == "text/csv"
    rows = list(csv.reader(answer.data.decode().splitlines()))[1:]
    assert [r[0] for r in rows] == [ex.sources[i] for i in ids]
    import dataclasses

    from mixvae.runfolder import matched_classes

    plain = dataclasses.replace(ex.assigned, matched_class=matched_classes(ex.evaluation))
    assert answer.data.decode() == csv_text(plain, ids)
    for body in ({"ids": [len(ex.sources)]}, {"ids": [-1]}, {"ids": ["1"]}, {"ids": [True]}, {"ids": 3}, [1, 2]):
        assert client.post("/api/export", json=body).status_code == 400, body
    assert client.post("/api/export", json={"ids": [1]}, headers={"Origin": "http://evil.example"}).status_code == 403


def _rss_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {key} for process {pid}")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the server's memory from /proc")
def test_the_servers_memory_stays_bounded_under_the_attack_corpus_and_big_uploads(guarded, tmp_path: Path) -> None:
    """`mixvae serve` in its own process: eight concurrent 4096 x 4096 uploads (the largest it
    decodes) and the attack corpus take its peak resident memory less than 400 MiB above what it
    held once serving, because uploads share two slots (measured: 308 MiB serving, peak 498 MiB;
    with eight slots the peak was 931 MiB); it keeps answering."""
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor

    ex, _, _, _ = guarded
    proc = subprocess.Popen([sys.executable, "-m", "mixvae", "serve", str(ex.run), "--port", "0"],
                            stderr=subprocess.PIPE, text=True)
    try:
        port = None
        for line in proc.stderr:  # type: ignore[union-attr]
            if "serving" in line:
                port = int(line.split("127.0.0.1:")[1].split("/")[0])
                break
        assert port, "the server did not start"
        ready = _rss_kib(proc.pid, "VmRSS")
        rng = np.random.default_rng(0)
        row = rng.integers(0, 256, (1, 4096, 3), dtype=np.uint8)
        big = png(np.tile(row, (4096, 1, 1)))  # 4096 x 4096 colour pixels, repeated rows: a small file
        assert len(big) < MAX_UPLOAD_BYTES

        def upload(_: int) -> int:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            try:
                conn.request("POST", "/api/route", body=big, headers={"Content-Type": "image/png"})
                return conn.getresponse().status
            finally:
                conn.close()

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(upload, range(8)))
        assert all(s in (200, 503) for s in statuses) and 200 in statuses, statuses  # 503: no slot within 5 s
        for body, kind in ((png_header(20000, 20000), "image/png"),
                           (b'{"pixels": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", "application/json")):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.request("POST", "/api/route", body=body, headers={"Content-Type": kind})
            assert 400 <= conn.getresponse().status < 500
            conn.close()
        peak = _rss_kib(proc.pid, "VmHWM")
        assert (peak - ready) < 400 * 1024, f"peak {peak // 1024} MiB, {ready // 1024} MiB once serving"
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("GET", "/api/map")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_train_skips_an_unreadable_file_with_one_line(tmp_path: Path, capsys) -> None:
    torch.manual_seed(0)
    folder, files = png_folder(tmp_path)
    (files[0].parent / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    run = train_tiny(folder, tmp_path / "run")  # exit status 0: the other images train
    err = [line for line in capsys.readouterr().err.splitlines() if "cannot be read" in line]
    assert len(err) == 1 and "1 of" in err[0] and "broken.png" in err[0] and "are skipped" in err[0]
    assert main(["evaluate", str(run)]) == 0  # evaluation reads the same images


def test_a_selection_is_exported_as_its_own_files_in_a_zip(guarded, monkeypatch, tmp_path) -> None:
    import io
    import zipfile

    from PIL import Image

    from mixvae.app import views

    ex, app, folder, _ = guarded
    client = app.test_client()
    ids = [7, 2, 30, 2]
    answer = client.post("/api/export", json={"ids": ids, "format": "zip"})
    assert answer.status_code == 200 and answer.mimetype == "application/zip"
    with zipfile.ZipFile(io.BytesIO(answer.data)) as archive:
        names = archive.namelist()
        assert names == ["selection.csv", *(f"images/{ex.sources[i]}" for i in (7, 2, 30))]  # each image once
        for i in (7, 2, 30):  # the files themselves, byte for byte
            assert archive.read(f"images/{ex.sources[i]}") == (folder / ex.sources[i]).read_bytes()
        assert archive.read("selection.csv").decode().count("\n") == 4  # a header and one row each
    outside = tmp_path / "secret.png"
    Image.open(folder / ex.sources[5]).point(lambda v: 255 - v).save(outside)  # a readable image, not for export
    swapped = folder / ex.sources[5]
    kept = swapped.read_bytes()
    swapped.unlink()
    swapped.symlink_to(outside)  # a file swapped for a link outside the folder after the app started
    try:
        with zipfile.ZipFile(io.BytesIO(client.post("/api/export", json={"ids": [5, 6], "format": "zip"}).data)) as a:
            assert a.namelist() == ["selection.csv", f"images/{ex.sources[6]}"]  # the outside file is left out
    finally:
        swapped.unlink()
        swapped.write_bytes(kept)
    monkeypatch.setattr(views, "EXPORT_FILES", 2)
    assert client.post("/api/export", json={"ids": [1, 2, 3], "format": "zip"}).status_code == 413
    monkeypatch.setattr(views, "EXPORT_FILES", 5000)
    monkeypatch.setattr(views, "EXPORT_BYTES", 10)
    assert client.post("/api/export", json={"ids": [1, 2], "format": "zip"}).status_code == 413
    assert client.post("/api/export", json={"ids": [1], "format": "tar"}).status_code == 400
