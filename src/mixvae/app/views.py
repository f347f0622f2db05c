"""The app's pages and its small JSON and PNG answers, as Flask views over one :class:`Explorer`.

No request parameter names a file: images are addressed by index (an int checked against the
data), figures by a name from :data:`mixvae.figures.FIGURES`, scripts by Flask's static route
inside the package. Anything else is a 404.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flask import Blueprint, Response, abort, current_app, jsonify, render_template, request, send_file

from mixvae.app.explorer import Explorer
from mixvae.app.images import BadImage, data_uri, pixels_image, png_bytes, upload_image
from mixvae.assign import csv_text
from mixvae.figures import FIGURES
from mixvae.runfolder import RunFolderError, matched_classes

__all__ = ["PER_PAGE", "pages"]

PER_PAGE = 48  # members per page of an expert
ROW = 8  # typical and borderline members, and samples, shown per expert on the clusters page
MAX_SAMPLES = 64

pages = Blueprint("pages", __name__)


def explorer() -> Explorer:
    return current_app.config["EXPLORER"]  # type: ignore[no-any-return]


def _png(image: np.ndarray) -> Response:
    return Response(png_bytes(image), mimetype="image/png", headers={"Cache-Control": "max-age=3600"})


def _expert(k: int) -> int:
    if not 0 <= k < explorer().n_experts:
        abort(404)
    return k


def _number(name: str, default: float, low: float, high: float) -> float:
    raw = request.args.get(name)
    try:
        value = default if raw is None else float(raw)
    except ValueError:
        abort(400, f"{name}={raw!r} is not a number")
    if not math.isfinite(value) or not low <= value <= high:
        abort(400, f"{name}={raw} is out of range: expected {low}..{high}")
    return value


def _items(ex: Explorer, indices: np.ndarray) -> list[dict[str, Any]]:
    a = ex.assigned
    assert a is not None
    rank = a.outlier_rank
    return [{"index": int(i), "source": a.sources[i], "expert": int(a.expert[i]),
             "probability": float(a.probability[i]), "runner_up": int(a.runner_up[i]),
             "score": float(a.outlier_score[i]), "rank": int(rank[i])} for i in indices]


# ----------------------------------------------------------------- pages
@pages.route("/")
def clusters() -> str:
    ex = explorer()
    rows = []
    for k in range(ex.n_experts):
        members = ex.members(k)
        rows.append({"k": k, "size": len(members), "matched": ex.matched(k),
                     "typical": _items(ex, members[:ROW]) if len(members) else [],
                     "borderline": _items(ex, members[::-1][:ROW]) if len(members) else []})
    return render_template("clusters.html", ex=ex, rows=rows, samples=range(ROW // 2), page="clusters")


@pages.route("/expert/<int:k>")
def expert(k: int) -> str:
    ex = explorer()
    _expert(k)
    members = ex.members(k)
    pages_total = max(1, math.ceil(len(members) / PER_PAGE))
    page = int(_number("page", 1, 1, pages_total))
    shown = members[(page - 1) * PER_PAGE:page * PER_PAGE]
    return render_template("expert.html", ex=ex, k=k, matched=ex.matched(k), size=len(members),
                           items=_items(ex, shown) if len(shown) else [], page_no=page, pages_total=pages_total,
                           page="expert")


@pages.route("/try")
def try_image() -> str:
    return render_template("try.html", ex=explorer(), page="try")


@pages.route("/map")
def map_page() -> str:
    return render_template("map.html", ex=explorer(), page="map")


@pages.route("/outliers")
def outliers() -> str:
    ex = explorer()
    pages_total = max(1, math.ceil(len(ex.sources) / PER_PAGE))
    page = int(_number("page", 1, 1, pages_total))
    shown = ex.outliers(page * PER_PAGE)[(page - 1) * PER_PAGE:] if ex.assigned else np.zeros(0, np.int64)
    return render_template("outliers.html", ex=ex, items=_items(ex, shown) if len(shown) else [], page="outliers",
                           page_no=page, pages_total=pages_total)


@pages.route("/search")
def search() -> str:
    """Images by file name (any part of it) or by class, of one expert or all, a page at a time."""
    ex = explorer()
    text, k, p_min, score_min = _query()
    found = ex.search(text, k, p_min, score_min)
    pages_total = max(1, math.ceil(len(found) / PER_PAGE))
    page = int(_number("page", 1, 1, pages_total))
    shown = found[(page - 1) * PER_PAGE:page * PER_PAGE]
    return render_template("search.html", ex=ex, q=text, k=k, found=len(found), page="search",
                           p_min=request.args.get("p_min", ""), score_min=request.args.get("score_min", ""),
                           items=_items(ex, shown) if len(shown) else [], page_no=page, pages_total=pages_total)


@pages.route("/export.csv")
def export() -> Response:
    """The images a search finds (all of them: ``q`` empty), as ``mixvae assign``'s CSV rows."""
    ex = explorer()
    if ex.assigned is None:
        abort(404)
    text, k, p_min, score_min = _query()
    return _csv(ex, ex.search(text, k, p_min, score_min).tolist())


@pages.route("/api/curate", methods=["POST"])
def curate() -> Response:
    """A decision about the clusters, kept in the run folder: ``{"action": "name", "expert": k,
    "name": "..."}``, ``{"action": "merge", "expert": k, "into": j}``, ``{"action": "move", "ids":
    [i, ...], "into": j}``, ``{"action": "junk", "ids": [i, ...]}`` or ``{"action": "reset"}``."""
    ex = explorer()
    try:
        body = json.loads(request.get_data(cache=False))
        action = body["action"]
        k = body.get("expert", 0)
        value = body.get("name", "") if action == "name" else body.get("into")
        ids = body.get("ids", [])
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        abort(400, 'the body is not {"action": ..., "expert": k, ...}')
    n, experts = len(ex.sources), range(ex.n_experts)
    if type(k) is not int or k not in experts or (action in ("merge", "move") and (
            type(value) is not int or value not in experts)) or (action == "name" and type(value) is not str) or (
            not isinstance(ids, list) or not all(type(i) is int and 0 <= i < n for i in ids)):
        abort(400, f"experts are integers in 0..{ex.n_experts - 1}, ids image indices in 0..{n - 1}, a name text")
    if action == "move":
        value = (value, ids)
    elif action == "junk":
        value = ids
    try:
        ex.curate(str(action), k, value)
    except RunFolderError as e:  # a training holds the run folder (a ValueError too: before the next clause)
        abort(409, str(e))
    except ValueError as e:
        abort(400, str(e))
    return jsonify(names={str(j): ex.matched(j) for j in range(ex.n_experts)},
                   merged={str(j): t for j in range(ex.n_experts) if (t := ex.curation.target(j)) != j})


@pages.route("/api/export", methods=["POST"])
def export_selection() -> Response:
    """A selection of training images (JSON ``{"ids": [i, ...], "format": "csv"}``, a lasso on the
    map say), as ``mixvae assign``'s CSV rows in the order given, or (``"format": "zip"``) as a
    zip archive of the images themselves with those rows beside them."""
    ex = explorer()
    if ex.assigned is None:
        abort(404)
    try:
        body = json.loads(request.get_data(cache=False))
        ids, kind = body["ids"], body.get("format", "csv")
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        abort(400, 'the body is not {"ids": [i, ...], "format": "csv" or "zip"}')
    n = len(ex.sources)
    if not isinstance(ids, list) or not all(type(i) is int and 0 <= i < n for i in ids):
        abort(400, f"ids must be a list of image indices in 0..{n - 1}")
    if kind not in ("csv", "zip"):
        abort(400, 'format must be "csv" or "zip"')
    return _csv(ex, ids) if kind == "csv" else _zip(ex, list(dict.fromkeys(ids)))


EXPORT_FILES = 5000  # a selection exported as its images holds at most this many
EXPORT_BYTES = 256 * 2**20  # and at most this many bytes of them


def _zip(ex: Explorer, ids: list[int]) -> Response:
    """Images ``ids`` as a zip archive, spooled to a temporary file: an image folder's own files at
    their paths in it (``images/``, streamed from disk; a file gone or no longer inside the folder is
    left out), an array's images as PNGs (``images/I.png``), and ``selection.csv`` (the CSV rows).
    413 beyond ``EXPORT_FILES`` images or ``EXPORT_BYTES``, checked before anything is read."""
    if len(ids) > EXPORT_FILES:
        abort(413, f"at most {EXPORT_FILES} images are exported at once; this selection has {len(ids)}")
    files = getattr(ex.images, "files", None) is not None
    picked: list[tuple[int, Path | None, int]] = []  # (image, its file or None for an array's image, bytes)
    for i in ids:
        path = ex.source_file(i)
        try:
            size = path.stat().st_size if path is not None else int(np.prod(ex.shape))  # a PNG: at most its pixels
        except OSError:
            path = None
        if files and path is None:  # a file gone, or now a link leading outside the folder: left out
            continue
        picked.append((i, path, size))
    if sum(size for _, _, size in picked) > EXPORT_BYTES:
        abort(413, f"the selection's images take more than {EXPORT_BYTES / 2**20:g} MiB; export fewer")
    handle = tempfile.TemporaryFile()  # noqa: SIM115 - send_file streams it, then closes it with the response
    try:
        with zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED) as archive:
            archive.writestr("selection.csv", _csv(ex, [i for i, _, _ in picked]).get_data())
            for i, path, _ in picked:
                try:
                    if path is not None:
                        archive.write(path, f"images/{ex.sources[i]}")  # streamed, a block at a time
                    else:
                        archive.writestr(f"images/{i}.png", png_bytes(ex.image(i)))
                except OSError:  # removed since it was listed: left out
                    continue
    except BaseException:
        handle.close()
        raise
    handle.seek(0)
    return send_file(handle, mimetype="application/zip", as_attachment=True, download_name="mixvae-selection.zip")


def _csv(ex: Explorer, ids: list[int]) -> Response:
    """Images ``ids`` as a CSV download with ``mixvae assign``'s rows (its classes named as assign names them)."""
    assert ex.trained is not None
    ex.refresh()  # the classes named as assign names them, then the user's names and merges, as assign applies them
    rows = ex.curation.label(dataclasses.replace(ex.trained, matched_class=matched_classes(ex.evaluation)),
                             ex.n_experts)
    response = Response(csv_text(rows, ids), mimetype="text/csv")
    response.headers["Content-Disposition"] = 'attachment; filename="mixvae-selection.csv"'
    return response


def _query() -> tuple[str, int | None, float, float]:
    """A search's text (at most 200 characters), expert (none: every expert), least routing
    probability and least outlier score (empty: no limit)."""
    text = request.args.get("q", "")
    if len(text) > 200:
        abort(400, "q is over 200 characters")
    k = _expert(int(_number("expert", 0, 0, explorer().n_experts - 1))) if request.args.get("expert", "") else None
    p_min = _number("p_min", 0.0, 0.0, 1.0) if request.args.get("p_min", "") else 0.0
    score_min = _number("score_min", 0.0, -1e12, 1e12) if request.args.get("score_min", "") else -math.inf
    return text, k, p_min, score_min


@pages.route("/training")
def training() -> str:
    ex = explorer()
    figures = [(name, caption) for name, caption in FIGURES.items() if (ex.run / name).is_file()]
    last = ex.records[-1] if ex.records else {}
    return render_template("training.html", ex=ex, figures=figures, last=last, records=ex.records,
                           page="training")


# ----------------------------------------------------------------- images
@pages.route("/item/<int:i>")
def item(i: int) -> str:
    """One training image: its source, routing, every expert's reconstruction, its outlier score
    and rank, and its nearest neighbours in the run's graph."""
    ex = explorer()
    if ex.assigned is None or ex.images is None or not 0 <= i < len(ex.sources):
        abort(404)
    routed = ex.route(ex.image(i))
    near = ex.neighbours(i)
    members = ex.members(int(ex.assigned.expert[i])).tolist()  # the previous and next image of its expert
    at = members.index(i)
    prev_i, next_i = (members[at - 1] if at > 0 else None), (members[at + 1] if at + 1 < len(members) else None)
    return render_template("item.html", ex=ex, page="item", it=_items(ex, np.array([i]))[0], routed=routed,
                           prev_i=prev_i, next_i=next_i, place=at + 1, members=len(members),
                           recons=[data_uri(r) for r in routed.reconstructions],
                           neighbours=_items(ex, near) if near is not None else None)


@pages.route("/image/<int:i>.png")
def image(i: int) -> Response:
    ex = explorer()
    if ex.images is None or not 0 <= i < len(ex.sources):
        abort(404)
    return _png(ex.image(i))


@pages.route("/sample/<int:k>/<int:seed>.png")
def sample(k: int, seed: int) -> Response:
    t = _number("t", 1.0, 0.0, 3.0)
    return _png(explorer().samples(_expert(k), 1, t, seed % 2**31)[0])


@pages.route("/decode/<int:k>.png")
def decode(k: int) -> Response:
    ex = explorer()
    _expert(k)
    raw = request.args.get("z", "")
    try:
        z = [float(v) for v in raw.split(",")] if raw else [0.0] * ex.latent_dim
    except ValueError:
        abort(400, "z must be comma-separated numbers")
    if len(z) != ex.latent_dim or not all(math.isfinite(v) and abs(v) <= 10 for v in z):
        abort(400, f"z must hold {ex.latent_dim} numbers in -10..10")
    return _png(ex.decode(k, torch.tensor([z], device="cpu"))[0])


@pages.route("/figure/<name>")
def figure(name: str) -> Response:
    ex = explorer()
    if name not in FIGURES or not (ex.run / name).is_file():  # only the run's own figures, by name
        abort(404)
    return send_file(ex.run / name, mimetype="image/png")


# ----------------------------------------------------------------- JSON
@pages.route("/api/route", methods=["POST"])
def route() -> Response:
    ex = explorer()
    try:
        if request.mimetype == "application/json":
            img = pixels_image(request.get_data(cache=False), ex.shape)
        elif request.mimetype == "multipart/form-data":
            upload = request.files.get("image")
            img = upload_image(upload.read() if upload is not None else b"", ex.cfg)
        else:  # the file itself as the body
            img = upload_image(request.get_data(cache=False), ex.cfg)
    except BadImage as e:
        return _error(e.status, str(e))
    r = ex.route(img)
    return jsonify(probabilities=r.probabilities, expert=int(np.argmax(r.probabilities)),
                   outlier_score=r.outlier_score, image=data_uri(img),
                   reconstructions=[data_uri(x) for x in r.reconstructions],
                   matched=[ex.matched(k) for k in range(ex.n_experts)])


@pages.route("/api/map")
def map_points() -> Response:
    ex = explorer()
    if ex.assigned is None:
        return jsonify(x=[], y=[], expert=[], source=[], score=[], label=[], labels=[])
    xy = ex.map()
    label = ex.classes or [""] * len(ex.sources)  # the data's own class: an image folder's sub-folder, an array's label
    return jsonify(x=np.round(xy[:, 0], 4).tolist(), y=np.round(xy[:, 1], 4).tolist(),
                   expert=ex.assigned.expert.tolist(), source=ex.sources,
                   matched=[ex.matched(k) for k in range(ex.n_experts)],
                   score=np.round(ex.assigned.outlier_score, 2).tolist(), label=label,
                   labels=sorted(set(label) - {""}, key=lambda c: (len(c), c)))


@pages.route("/api/image/<int:i>")
def image_info(i: int) -> Response:
    ex = explorer()
    if ex.assigned is None or not 0 <= i < len(ex.sources):
        abort(404)
    return jsonify(**_items(ex, np.array([i]))[0])


def _error(status: int, message: str) -> Response:
    response = jsonify(error=message)
    response.status_code = status
    return response
