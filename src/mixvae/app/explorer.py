"""What the app shows, computed from a run: one :class:`Explorer`, loaded once and shared by every request.

The model is loaded once; each image's routing and outlier score are computed once per set of
weights (through :mod:`mixvae.assign`, as ``mixvae assign`` computes them), and the 2-D map too,
and both are kept in the run folder (:data:`mixvae.runfolder.ROUTING_FILE`, ``MAP_FILE``). Every use of the model holds one lock, so
concurrent requests never interleave inside torch.
"""

from __future__ import annotations

import copy
import io
import json
import math
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mixvae.assign import IW_SAMPLES, Assignments, assign
from mixvae.atomic import atomic_write, file_sha256
from mixvae.checkpoint import load_run
from mixvae.config import RunConfig
from mixvae.curation import Curation, read_curation, write_curation
from mixvae.data import DataError, load
from mixvae.data.builtin import builtin_name
from mixvae.data.formats import idx_kind
from mixvae.devices import cpu_draw
from mixvae.inference import images_to_tensor, log_likelihood
from mixvae.kinds.images import GreyImages, array_shape
from mixvae.model import MixtureModule
from mixvae.runfolder import (
    CURATION_FILE,
    EVAL_FILE,
    MAP_FILE,
    NEIGHBOURS_FILE,
    ROUTING_FILE,
    WEIGHTS_FILE,
    matched_classes,
    read_eval,
    read_metrics,
)

__all__ = ["Explorer", "Routed", "embed"]

MAP_NEIGHBOURS = 15
UMAP_FROM = 5000  # images; t-SNE below (measured: 120 images, UMAP 38 s with its compilation, t-SNE 1 s)


@dataclass
class Routed:
    """One image routed through the model: q(k|x), its score and every expert's reconstruction."""

    probabilities: list[float]
    outlier_score: float
    reconstructions: np.ndarray  # (K, H, W) or (K, H, W, C) uint8


def embed(features: np.ndarray, seed: int = 0) -> tuple[np.ndarray, str]:
    """A 2-D embedding of ``features`` (N, F) -> ((N, 2) float32, the method's name).

    UMAP from :data:`UMAP_FROM` images up (its first call in a process compiles for a minute);
    scikit-learn's t-SNE below, where it takes seconds; PCA below 5 images.
    """
    n = len(features)
    if n < UMAP_FROM:
        return _small_embedding(features, seed)

    import umap  # umap-learn loads numba (seconds): only when a map is first computed

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # umap's note that a seed means one thread
        reducer = umap.UMAP(n_neighbors=MAP_NEIGHBOURS, min_dist=0.1, random_state=seed)
        return reducer.fit_transform(features).astype(np.float32), "umap"


def _small_embedding(features: np.ndarray, seed: int) -> tuple[np.ndarray, str]:
    n = len(features)
    if n >= 5:
        from sklearn.manifold import TSNE  # the map's fallback: loaded with the map only

        xy = TSNE(2, perplexity=min(30.0, (n - 1) / 3), init="pca", random_state=seed).fit_transform(features)
        return xy.astype(np.float32), "tsne"
    from sklearn.decomposition import PCA  # the map's first step: loaded with the map only

    out = np.zeros((n, 2), np.float32)
    if n > 1:
        d = min(2, n, features.shape[1])
        out[:, :d] = PCA(d).fit_transform(features)
    return out, "pca"


_ROUTING_KEYS = ("expert", "probability", "runner_up", "runner_up_probability", "outlier_score")


def _npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]  # numpy types a ** mapping as its allow_pickle flag
    atomic_write(path, buf.getvalue())


def _weights_digest(run: Path) -> str:
    return file_sha256(run / WEIGHTS_FILE)


def _cached_routing(run: Path, sources: list[str], iw_samples: int) -> Assignments | None:
    """The routing kept in the run folder, when it belongs to these weights, these images and
    this many draws of the outlier score's bound."""

    path = run / ROUTING_FILE
    if not path.exists():
        return None
    with np.load(path) as cached:
        if (str(cached["weights_sha256"]) != _weights_digest(run) or list(cached["sources"]) != sources
                or int(cached.get("iw_samples", 1)) != iw_samples):
            return None
        if "routing" not in cached.files:  # kept by an older mixvae: routed again, with every probability
            return None
        return Assignments(list(sources), **{k: cached[k] for k in (*_ROUTING_KEYS, "routing")})


def _save_routing(run: Path, a: Assignments, iw_samples: int) -> None:
    _npz(run / ROUTING_FILE, {**{k: getattr(a, k) for k in (*_ROUTING_KEYS, "routing")}, "sources": np.array(a.sources),
                              "weights_sha256": np.array(_weights_digest(run)), "iw_samples": np.array(iw_samples)})


def _commonest_classes(assigned: Assignments, classes: list[str], n_experts: int) -> list[str] | None:
    """Before any ``mixvae evaluate``: each expert's most common class ("-" for an empty expert),
    when the training images have classes (an image folder's sub-folders, as the training figures
    name them, or an array's labels); None otherwise. Shown only: nothing is chosen by it."""
    if not classes or "" in classes or len(set(classes)) < 2:
        return None
    names = []
    labels = np.asarray(classes)
    for k in range(n_experts):
        found, counts = np.unique(labels[assigned.expert == k], return_counts=True)  # sorted: ties go to the first
        names.append(str(found[counts.argmax()]) if len(found) else "-")
    return names


def _to_uint8(x: torch.Tensor, shape: tuple[int, ...]) -> np.ndarray:
    """Pixels in [0, 1], (..., D) -> uint8 (..., *shape): (H, W), or (H, W, C) in colour."""
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy().reshape(*x.shape[:-1], *shape)


class Explorer:
    """A trained model, the images it was trained on (when they can be found) and their routing."""

    def __init__(self, run: Path, module: MixtureModule, cfg: RunConfig, images: Any | None,
                 sources: list[str], assigned: Assignments | None, records: list[dict[str, Any]],
                 evaluation: dict[str, Any], iw_samples: int = IW_SAMPLES, classes: list[str] | None = None):
        self.run, self.module, self.cfg = Path(run), module, cfg
        self.images, self.sources = images, sources
        self.classes = classes or []  # each training image's own class (sub-folder or label), "" where unknown
        self.trained = assigned  # the routing as the model gives it; ``assigned``: as the user's decisions make it
        self.records, self.evaluation = records, evaluation
        self.iw_samples = iw_samples  # the outlier score's draws, for uploads as for the training images
        self.lock = threading.Lock()
        self.map_lock = threading.Lock()  # one computation of the map, however many ask at once
        self._map: np.ndarray | None = None
        self._eval_seen = self._stamp(EVAL_FILE)
        self.curation = read_curation(self.run, cfg.model.n_components)  # names and merges (mixvae.curation)
        self._curation_seen = self._stamp(CURATION_FILE)
        self.curation_lock = threading.Lock()
        self.assigned: Assignments | None = None
        self._relabel()
        self._graph: np.ndarray | None = None

    # ----------------------------------------------------------------- opening
    @classmethod
    def open(cls, run: Path | str, device: str = "cpu", log: Callable[[str], None] = print,
             iw_samples: int = IW_SAMPLES) -> Explorer:
        """Load a run folder (or a folder written by ``MixtureVAE.save``) and route its images."""

        run = Path(run)
        module, cfg = load_run(run, device)
        images: Any | None = None
        sources: list[str] = []
        classes: list[str] = []
        try:
            images, sources, classes = cls._training_images(cfg, log)
        except (DataError, OSError) as e:
            log(f"mixvae: the app shows no members: the training images cannot be read ({e})")
        assigned = None
        if images is not None:
            assigned = _cached_routing(run, sources, iw_samples)
            if assigned is None:
                log(f"mixvae: routing and scoring {len(images)} images (once; kept in the run folder)")
                assigned = assign(module, images, sources, iw_samples=iw_samples, binarize=cfg.train.binarize,
                                  device=device)
                _save_routing(run, assigned, iw_samples)
            assigned.matched_class = (matched_classes(read_eval(run))
                                      or _commonest_classes(assigned, classes, cfg.model.n_components))
        return cls(run, module, cfg, images, sources, assigned, read_metrics(run), read_eval(run), iw_samples,
                   classes)

    @staticmethod
    def _training_images(cfg: RunConfig, log: Callable[[str], None]) -> tuple[Any | None, list[str], list[str]]:
        """The training images, their sources (paths in an image folder, else indices) and classes
        (sub-folders, or the array's labels; none when it has none): shown only, never chosen by."""
        if cfg.data in ("", "array"):  # an estimator fitted on an array: nothing to show
            return None, [], []
        path = Path(cfg.data).expanduser()
        if builtin_name(cfg.data) is None and path.is_dir() and not any(idx_kind(p.name) for p in path.iterdir()):
            # an image folder: its readable files by their paths (one that does not read is reported and
            # skipped), converted as training converted them, read as they are asked for
            sources, files_images, _ = GreyImages().collection(cfg.data, "train", cfg, log)
            return files_images, sources, [s.split("/", 1)[0] if "/" in s else "" for s in sources]
        options: dict[str, Any] = {"grayscale": True} if len(array_shape(cfg)) == 2 else {}
        data = load(cfg.data, "train", image_size=cfg.image_size, log=lambda m: None, **options)
        if tuple(data.images.shape[1:]) != array_shape(cfg):
            return None, [], []
        classes = [] if data.labels is None else [str(label) for label in np.asarray(data.labels).tolist()]
        return data.images, [str(i) for i in range(len(data.images))], classes

    # ----------------------------------------------------------------- facts
    @property
    def n_experts(self) -> int:
        return self.cfg.model.n_components

    @property
    def shape(self) -> tuple[int, ...]:
        """One image as an array: (H, W), or (H, W, C) in colour."""
        return array_shape(self.cfg)

    @property
    def latent_dim(self) -> int:
        return self.cfg.model.latent_dim

    def _stamp(self, name: str) -> tuple[int, int] | None:
        try:
            st = (self.run / name).stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def _relabel(self) -> None:
        """The routing as the decisions make it (merged experts)."""
        self.assigned = self.curation.apply(self.trained) if self.trained is not None else None

    def refresh(self) -> None:
        """Read ``eval.json`` and the curation again when they changed (a ``mixvae evaluate``, or
        another server over the same run, while this one runs)."""
        stamp = self._stamp(EVAL_FILE)
        if stamp != self._eval_seen:
            self._eval_seen = stamp
            self.evaluation = read_eval(self.run)
            if self.trained is not None:
                self.trained.matched_class = (matched_classes(self.evaluation)
                                              or _commonest_classes(self.trained, self.classes, self.n_experts))
            self._relabel()
        stamp = self._stamp(CURATION_FILE)
        if stamp != self._curation_seen:
            self._curation_seen = stamp
            self.curation = read_curation(self.run, self.n_experts)
            self._relabel()

    def curate(self, action: str, k: int = 0, value: Any = None) -> None:
        """One decision ("name" expert k ``value``, "merge" k into ``value``, "move" images
        ``value[1]`` into expert ``value[0]``, "junk" images ``value``, "reset"), kept in the
        run folder at once (RunFolderError while a training holds the folder; ValueError for a
        decision that cannot be made)."""
        with self.curation_lock:
            self.refresh()
            decided = copy.deepcopy(self.curation)
            if action == "name":
                decided.rename(k, str(value))
            elif action == "merge":
                decided.merge(k, int(value))
            elif action == "move":
                decided.move([self.sources[i] for i in value[1]], int(value[0]))
            elif action == "junk":
                decided.discard([self.sources[i] for i in value])
            elif action == "reset":
                decided = Curation()
            else:
                raise ValueError(f"unknown action {action!r}: expected name, merge, move, junk or reset")
            write_curation(self.run, decided)
            self.curation, self._curation_seen = decided, self._stamp(CURATION_FILE)
            self._relabel()

    def matched(self, k: int) -> str | None:
        """The name of expert k's cluster: the one a user gave it, else its matched class."""
        self.refresh()
        if k < 0:
            return "junk"
        given = self.curation.name(k)
        if given:
            return given
        names = self.trained.matched_class if self.trained is not None else None
        return names[self.curation.target(k)] if names else None

    def members(self, k: int) -> np.ndarray:
        """The images routed to expert k, most probable first."""
        if self.assigned is None:
            return np.zeros(0, np.int64)
        a = self.assigned
        idx = np.flatnonzero(a.expert == k)
        return idx[np.lexsort((idx, -a.probability[idx]))]

    def search(self, text: str, k: int | None = None, min_probability: float = 0.0,
               min_score: float = -math.inf) -> np.ndarray:
        """The images whose source contains ``text`` (any case) or whose expert's matched class is
        ``text``, of expert k when given, routed with at least ``min_probability`` and with an
        outlier score of at least ``min_score``: each expert's most probable first, experts in order."""
        if self.assigned is None:
            return np.zeros(0, np.int64)
        a, needle = self.assigned, text.strip().lower()
        found = []
        for j in range(self.n_experts) if k is None else [k]:
            whole = bool(needle) and str(self.matched(j) or "").lower() == needle  # the class named: all its images
            found += [int(i) for i in self.members(j) if (whole or needle in self.sources[i].lower())
                      and a.probability[i] >= min_probability and a.outlier_score[i] >= min_score]
        return np.array(found, dtype=np.int64)

    def outliers(self, n: int) -> np.ndarray:
        """The n images with the highest outlier score (lowest likelihood bound)."""
        if self.assigned is None:
            return np.zeros(0, np.int64)
        return np.argsort(self.assigned.outlier_rank, kind="stable")[:n]

    def neighbours(self, i: int, k: int = 10) -> np.ndarray | None:
        """Image i's k nearest training images in the run's neighbour graph (the one training built
        and kept, ``neighbours.npy``), nearest first; None when the run folder has none for these images."""
        if self._graph is None:
            path = self.run / NEIGHBOURS_FILE
            if not path.exists():
                return None
            graph = np.load(path, mmap_mode="r")
            if graph.ndim != 2 or len(graph) != len(self.sources):
                return None
            self._graph = graph
        return np.asarray(self._graph[i, :k], dtype=np.int64)

    def image(self, i: int) -> np.ndarray:
        assert self.images is not None
        return np.asarray(self.images[i:i + 1])[0]

    def source_file(self, i: int) -> Path | None:
        """Image i's own file, when the training images are an image folder's files and that file
        (links followed now, not only when the folder was read) still lies inside the folder."""
        files = getattr(self.images, "files", None)
        if files is None or not 0 <= i < len(files):
            return None
        root = Path(self.cfg.data).expanduser().resolve()
        path = Path(files[i])
        return path if path.resolve().is_relative_to(root) and path.is_file() else None

    # ----------------------------------------------------------------- the model
    @torch.no_grad()
    def samples(self, k: int, n: int, temperature: float, seed: int) -> np.ndarray:
        """n images decoded by expert k from z ~ N(0, temperature^2 I) -> (n, *shape) uint8."""
        gen = torch.Generator().manual_seed(seed)
        z = cpu_draw(torch.randn, n, self.latent_dim, generator=gen) * temperature  # (n, L)
        return self.decode(k, z)

    @torch.no_grad()
    def decode(self, k: int, z: torch.Tensor) -> np.ndarray:
        """Expert k's mean image for each z (n, L) -> (n, *shape) uint8."""
        with self.lock:
            dev = next(self.module.parameters()).device
            zk = z.to(dev).expand(self.n_experts, *z.shape)  # (K, n, L)
            return _to_uint8(self.module.decode(zk)[k], self.shape)

    @torch.no_grad()
    def route(self, image: np.ndarray) -> Routed:
        """Route one uint8 image (:attr:`shape`): probabilities, outlier score, every expert's reconstruction."""

        with self.lock:
            dev = next(self.module.parameters()).device
            x = images_to_tensor(image[None]).to(dev)  # (1, D)
            probs = self.module.predict_proba(x)[0].cpu()
            mu, _ = self.module.encode(x)  # (K, 1, L)
            recon = _to_uint8(self.module.decode(mu)[:, 0], self.shape)  # (K, *shape)
            score = -float(log_likelihood(self.module, image[None], self.iw_samples, binarize=self.cfg.train.binarize,
                                          device=dev)[0])
        return Routed([float(p) for p in probs], score, recon)

    # ----------------------------------------------------------------- the map
    @torch.no_grad()
    def features(self) -> np.ndarray:
        """The manager's last hidden layer for every image, (N, F): the space the routing is read from."""
        assert self.images is not None
        manager = self.module.manager
        net = getattr(manager, "net", None)
        head = net[:-1] if isinstance(net, torch.nn.Sequential) and len(net) > 1 else manager
        out = []
        with self.lock:
            dev = next(self.module.parameters()).device
            for start in range(0, len(self.images), 1000):
                out.append(head(images_to_tensor(self.images, start, start + 1000).to(dev)).float().cpu())
        return torch.cat(out).numpy()

    def map_ready(self) -> bool:
        """Whether the map is at hand (computed, or kept in the run folder for these weights)."""
        with self.map_lock:
            if self._map is None:
                self._map = self._kept_map(_weights_digest(self.run))
            return self._map is not None

    def map(self, log: Callable[[str], None] | None = None) -> np.ndarray:
        """(N, 2) map of the images; computed once for these weights and kept in the run folder."""
        with self.map_lock:
            return self._map_once(log)

    def _kept_map(self, digest: str) -> np.ndarray | None:
        """The map kept in the run folder, when it belongs to these weights and images."""
        path = self.run / MAP_FILE
        if not path.exists():
            return None
        with np.load(path) as cached:
            if str(cached["weights_sha256"]) == digest and len(cached["xy"]) == len(self.sources):
                return cached["xy"]
        return None

    def _map_once(self, log: Callable[[str], None] | None) -> np.ndarray:
        if self._map is not None:
            return self._map
        digest = _weights_digest(self.run)
        self._map = self._kept_map(digest)
        if self._map is not None:
            return self._map
        path = self.run / MAP_FILE
        if log:
            log(f"mixvae: computing the map of {len(self.sources)} images (once; kept in {path})")
        xy, method = embed(self.features())
        _npz(path, {"xy": xy, "weights_sha256": np.array(digest), "method": np.array(method)})
        self._map = xy
        return xy

    def summary(self) -> dict[str, Any]:
        """A few facts for page headers, as JSON."""
        return {"run": self.run.name, "experts": self.n_experts, "images": len(self.sources),
                "shape": list(self.shape), "latent_dim": self.latent_dim,
                "config": json.loads(self.cfg.to_json())["model"]}
