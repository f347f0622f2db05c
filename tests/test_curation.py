"""Decisions about a run's clusters (names, merges): kept in the run folder, shown by the app,
used by ``mixvae assign`` and ``mixvae predict``, never by training."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("flask")

from mixvae.app import Explorer, create_app
from mixvae.cli import main
from mixvae.curation import Curation, read_curation
from mixvae.runfolder import CURATION_FILE, RunFolderError, RunLock

from test_assign import png_folder, train_tiny


@pytest.fixture
def curated(tmp_path):
    torch.manual_seed(0)
    folder, files = png_folder(tmp_path)
    run = train_tiny(folder, tmp_path / "run")
    ex = Explorer.open(run, log=lambda m: None)
    return ex, create_app(ex).test_client(), folder, files


def sizes(ex: Explorer) -> list[int]:
    return [len(ex.members(k)) for k in range(ex.n_experts)]


def test_merges_follow_their_chain_and_names_follow_the_cluster() -> None:
    c = Curation()
    c.rename(2, "  round   things ")
    c.merge(2, 3)
    c.merge(3, 1)
    assert [c.target(k) for k in range(5)] == [0, 1, 1, 1, 4]
    assert c.name(2) is None  # a name gives way to the cluster it joined
    c.rename(2, "ones")  # names the cluster 2 now belongs to
    assert c.names == {1: "ones"} and c.name(3) == "ones"
    with pytest.raises(ValueError, match="already in that cluster"):
        c.merge(3, 1)
    with pytest.raises(ValueError, match="over 60 characters"):
        c.rename(0, "x" * 61)


def test_a_name_and_a_merge_are_kept_shown_and_survive_a_restart(curated) -> None:
    ex, client, _, _ = curated
    before = sizes(ex)
    k, j = int(np.argmax(before)), int(np.argsort(before)[-2])
    assert client.post("/api/curate", json={"action": "name", "expert": j, "name": "top band"}).status_code == 200
    answer = client.post("/api/curate", json={"action": "merge", "expert": k, "into": j})
    assert answer.status_code == 200 and answer.get_json()["merged"] == {str(k): j}
    saved = json.loads((ex.run / CURATION_FILE).read_text())
    assert saved == {"names": {str(j): "top band"}, "merged": {str(k): j}, "moved": {}, "junk": []}
    assert sizes(ex)[j] == before[j] + before[k] and sizes(ex)[k] == 0
    assert ex.matched(k) == ex.matched(j) == "top band"
    assert "top band" in client.get(f"/expert/{j}").data.decode()
    assert f'Merged into <a href="/expert/{j}">' in client.get(f"/expert/{k}").data.decode()
    again = Explorer.open(ex.run, log=lambda m: None)  # a restart: every decision kept
    assert sizes(again) == sizes(ex) and again.matched(k) == "top band"
    assert client.post("/api/curate", json={"action": "reset"}).status_code == 200
    assert sizes(ex) == before and ex.matched(j) != "top band"


def test_assign_and_predict_use_the_names_and_merges(curated, tmp_path: Path, capsys) -> None:
    ex, client, folder, files = curated
    before = sizes(ex)
    k, j = int(np.argmax(before)), int(np.argsort(before)[-2])
    client.post("/api/curate", json={"action": "name", "expert": j, "name": "top band"})
    client.post("/api/curate", json={"action": "merge", "expert": k, "into": j})
    out, sorted_dir = tmp_path / "a.csv", tmp_path / "sorted"
    assert main(["assign", str(ex.run), "--data", str(folder), "--out", str(out), "--sort-into", str(sorted_dir),
                 "--quiet"]) == 0
    rows = list(csv.DictReader(out.read_text().splitlines()))
    trained = {ex.sources[i]: int(e) for i, e in enumerate(ex.trained.expert)}
    for r in rows:
        want = j if trained[r["source"]] in (k, j) else trained[r["source"]]
        assert int(r["expert"]) == want
        assert r["name"] == ("top band" if want == j else "")
    assert (sorted_dir / f"expert-{j:02d}-top_band").is_dir() and not (sorted_dir / f"expert-{k:02d}").exists()
    capsys.readouterr()
    member = files[[f.relative_to(folder).as_posix() for f in files].index(ex.sources[int(ex.members(j)[0])])]
    assert main(["predict", str(ex.run), str(member)]) == 0
    header, line = capsys.readouterr().out.strip().splitlines()
    assert header.split("\t")[-1] == "name" and line.split("\t")[1] == str(j) and line.split("\t")[-1] == "top band"


def test_a_decision_is_refused_while_a_training_holds_the_run_and_bad_ones_get_400(curated) -> None:
    ex, client, _, _ = curated
    with RunLock(ex.run):
        answer = client.post("/api/curate", json={"action": "name", "expert": 0, "name": "x"})
        assert answer.status_code == 409 and "in use" in answer.get_json()["error"]
    assert not (ex.run / CURATION_FILE).exists()
    for body in ({"action": "merge", "expert": 0, "into": 0}, {"action": "merge", "expert": 0, "into": 99},
                 {"action": "name", "expert": -1, "name": "x"}, {"action": "name", "expert": 0, "name": 3},
                 {"action": "jump"}, {"expert": 1}, [1]):
        assert client.post("/api/curate", json=body).status_code == 400, body
    assert client.post("/api/curate", json={"action": "reset"}, headers={"Origin": "http://evil.example"}
                       ).status_code == 403
    (ex.run / CURATION_FILE).write_text('{"merged": {"7": 99}}')
    with pytest.raises(RunFolderError, match="names expert"):
        read_curation(ex.run, ex.n_experts)


def test_moved_and_junk_images_go_where_they_were_put_in_the_app_and_in_assign(curated, tmp_path: Path) -> None:
    ex, client, folder, _ = curated
    k = int(np.argmax(sizes(ex)))
    j = (k + 1) % ex.n_experts
    members = ex.members(k).tolist()
    move, junk = members[:3], members[3:5]
    assert client.post("/api/curate", json={"action": "move", "ids": move, "into": j}).status_code == 200
    assert client.post("/api/curate", json={"action": "junk", "ids": junk}).status_code == 200
    assert set(move) <= set(ex.members(j).tolist()) and not set(move + junk) & set(ex.members(k).tolist())
    assert ex.matched(-1) == "junk" and [int(e) for e in ex.assigned.expert[junk]] == [-1, -1]
    saved = json.loads((ex.run / CURATION_FILE).read_text())
    assert saved["moved"] == {ex.sources[i]: j for i in move} and saved["junk"] == sorted(ex.sources[i] for i in junk)
    assert client.get(f"/item/{junk[0]}").status_code == 200  # a junk image still has its page
    out, sorted_dir = tmp_path / "a.csv", tmp_path / "sorted"
    assert main(["assign", str(ex.run), "--data", str(folder), "--out", str(out), "--sort-into", str(sorted_dir),
                 "--quiet"]) == 0
    rows = {r["source"]: r for r in csv.DictReader(out.read_text().splitlines())}
    assert all(int(rows[ex.sources[i]]["expert"]) == j for i in move)
    assert all(rows[ex.sources[i]]["expert"] == "-1" and rows[ex.sources[i]]["name"] == "junk" for i in junk)
    assert len(list((sorted_dir / "junk").glob("*.png"))) == 2
    assert main(["assign", str(ex.run), "--data", str(folder), "--out", str(out), "--sort-into", str(sorted_dir),
                 "--quiet", "--overwrite"]) == 0  # the junk folder is assign's own: replaced, not refused
    again = Explorer.open(ex.run, log=lambda m: None)
    assert [int(e) for e in again.assigned.expert[move + junk]] == [j, j, j, -1, -1]


def test_a_merged_clusters_probability_is_the_sum_of_its_experts() -> None:
    from mixvae.assign import Assignments, top_two

    rng = np.random.default_rng(0)
    routing = rng.dirichlet(np.ones(4), size=60).astype(np.float32)  # (N, K)
    sources = [f"i{j}" for j in range(60)]
    a = Assignments(sources, *top_two(routing), outlier_score=np.zeros(60), routing=routing)
    c = Curation()
    c.merge(1, 3)
    c.move(["i5"], 0)
    out = c.apply(a)
    clusters = {0: routing[:, 0], 2: routing[:, 2], 3: routing[:, 1] + routing[:, 3]}  # computed independently
    for i in range(60):
        ranked = sorted(clusters, key=lambda k: -clusters[k][i])
        if sources[i] == "i5":  # moved: its cluster, that cluster's probability, the likeliest other cluster second
            assert out.expert[i] == 0 and out.probability[i] == pytest.approx(routing[i, 0])
            other = max((2, 3), key=lambda k: clusters[k][i])
            assert out.runner_up[i] == other and out.runner_up_probability[i] == pytest.approx(clusters[other][i])
            continue
        assert out.expert[i] == ranked[0] and out.probability[i] == pytest.approx(clusters[ranked[0]][i])
        assert out.runner_up[i] == ranked[1] and out.runner_up_probability[i] == pytest.approx(clusters[ranked[1]][i])
    c.merge(0, 3)
    c.merge(2, 3)  # one cluster left: it takes every image, with probability 1 and no other cluster second
    every = c.apply(a)
    assert (every.expert == 3).all() and np.allclose(every.probability, 1.0, atol=1e-5)
    assert (every.runner_up == 3).all() and (every.runner_up_probability == 0).all()


def test_predict_gives_a_merged_clusters_summed_probability(curated, tmp_path, capsys) -> None:
    from mixvae.checkpoint import load_run
    from mixvae.inference import predict_proba
    from mixvae.kinds.images import read_file

    ex, _, _, files = curated
    run = ex.run
    module, cfg = load_run(run)
    probs = predict_proba(module, np.stack([read_file(f, cfg) for f in files[:6]]))
    c = Curation()
    c.merge(0, 1)
    (run / CURATION_FILE).write_text(c.to_json())
    assert main(["predict", str(run), *map(str, files[:6])]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()[1:]]
    for row, p in zip(rows, probs):
        cluster = {1: p[0] + p[1], **{k: p[k] for k in range(2, len(p))}}
        best = max(cluster, key=cluster.get)
        assert int(row[1]) == best and float(row[2]) == pytest.approx(cluster[best], abs=1e-4)
