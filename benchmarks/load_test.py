"""A bounded load test of ``mixvae serve``: a fixed number of requests from several threads.

Starts ``mixvae serve RUN --port 0`` in its own process on 127.0.0.1, waits for it to listen,
asks for the map once (its first computation, timed apart), then sends a fixed, shuffled list of
requests (every page, images, samples, slider decodes, routed uploads, an image's own page,
searches and CSV exports, the map's data) from
``--threads`` client threads and stops. With ``--cold`` the server first routes and scores the
training images and computes the map (both then kept in the run folder), and those are timed. Writes the latency of each kind of request (p50, p95,
max), the errors (any answer but 200, or no answer) and the machine to
benchmarks/results/load_test.json.

    python benchmarks/load_test.py --run runs/explore --requests 600 --threads 8 --cold
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
KINDS = ("page", "image", "sample", "decode", "route", "item", "search", "map")


def start_server(run: Path) -> tuple[subprocess.Popen[str], str, float]:
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "mixvae", "serve", str(run), "--port", "0"],
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        print(line.rstrip(), file=sys.stderr)
        found = re.search(r"at (http://127\.0\.0\.1:\d+)/", line)
        if found:
            threading.Thread(target=drain, args=(proc.stderr,), daemon=True).start()  # a full pipe would block it
            return proc, found.group(1), time.perf_counter() - t0
    raise SystemExit(f"the server exited with status {proc.wait()}")


def drain(stream: Any) -> None:
    """Read the server's log (a line per request) and show only what is not a request line."""
    for line in stream:
        if '" 200 -' not in line:
            print(line.rstrip(), file=sys.stderr)


def png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def plan(n: int, experts: int, latent: int, images: int, uploads: list[bytes], seed: int) -> list[tuple[str, Any]]:
    """n requests, spread over the kinds (the map's data, the largest answer, 1 in 60), shuffled."""
    rng = random.Random(seed)
    pages = ["/", "/try", "/map", "/outliers", "/training"] + [f"/expert/{k}" for k in range(experts)]
    out: list[tuple[str, Any]] = []
    for i in range(n):
        kind = "map" if i % 60 == 59 else KINDS[i % 7]
        if kind == "page":
            out.append((kind, rng.choice(pages)))
        elif kind == "image":
            out.append((kind, f"/image/{rng.randrange(images)}.png"))
        elif kind == "sample":
            out.append((kind, f"/sample/{rng.randrange(experts)}/{rng.randrange(10**6)}.png?t={rng.uniform(0.5, 1.5):.2f}"))
        elif kind == "decode":
            z = ",".join(f"{rng.uniform(-3, 3):.1f}" for _ in range(latent))
            out.append((kind, f"/decode/{rng.randrange(experts)}.png?z={z}"))
        elif kind == "route":
            out.append((kind, rng.choice(uploads)))
        elif kind == "item":
            out.append((kind, f"/item/{rng.randrange(images)}"))
        elif kind == "search":
            out.append((kind, rng.choice([f"/search?q={rng.randrange(10)}", f"/search?expert={rng.randrange(experts)}",
                                          f"/export.csv?expert={rng.randrange(experts)}",
                                          f"/search?p_min=0.9&page={rng.randrange(1, 3)}"])))
        else:
            out.append((kind, "/api/map"))
    rng.shuffle(out)
    return out


def send(base: str, kind: str, what: Any, timeout: float = 120) -> tuple[str, float, int]:
    boundary = "mixvaeloadtest"
    t0 = time.perf_counter()
    try:
        if kind == "route":
            body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x.png\"\r\n"
                    f"Content-Type: image/png\r\n\r\n").encode() + what + f"\r\n--{boundary}--\r\n".encode()
            req = urllib.request.Request(base + "/api/route", data=body, method="POST",
                                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        else:
            req = urllib.request.Request(base + what)
        with urllib.request.urlopen(req, timeout=timeout) as r:
            r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        status = e.code
    except OSError:
        status = 0
    return kind, time.perf_counter() - t0, status


def summary(times: list[float]) -> dict[str, float]:
    ms = np.array(times) * 1000
    return {"requests": len(ms), "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p95_ms": round(float(np.percentile(ms, 95)), 1), "max_ms": round(float(ms.max()), 1)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, default=Path("runs/explore"))
    p.add_argument("--requests", type=int, default=600)
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS / "load_test.json")
    p.add_argument("--cold", action="store_true",
                   help="remove the routing and the map kept in RUN first, so that their computation is timed")
    args = p.parse_args()
    from mixvae.config import load_config
    from mixvae.data import load
    from mixvae.runfolder import MAP_FILE, ROUTING_FILE, read_eval

    if args.cold:
        for name in (ROUTING_FILE, MAP_FILE):
            (args.run / name).unlink(missing_ok=True)

    cfg = load_config(args.run)
    test = load(cfg.data, "test" if cfg.data in ("mnist", "fashion-mnist") else "train").images
    uploads = [png(np.asarray(test[i])) for i in range(50)]
    load_before = os.getloadavg()[0]
    proc, base, start_seconds = start_server(args.run)
    try:
        _, first_map, status = send(base, "map", "/api/map", timeout=3600)  # computes the map (or reads it from the run)
        assert status == 200, status
        images = len(json.loads(urllib.request.urlopen(base + "/api/map", timeout=120).read())["x"])
        requests = plan(args.requests, cfg.model.n_components, cfg.model.latent_dim, images, uploads, args.seed)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.threads) as pool:
            done = list(pool.map(lambda r: send(base, *r), requests))
        wall = time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    errors = [(k, s) for k, _, s in done if s != 200]
    result = {
        "command": "python benchmarks/load_test.py " + " ".join(sys.argv[1:]),
        "run": {"folder": str(args.run), "data": cfg.data, "images": images, "experts": cfg.model.n_components,
                "test_acc": (read_eval(args.run).get("test") or {}).get("acc")},
        "cold": args.cold,
        "threads": args.threads, "requests": len(done), "errors": len(errors),
        "error_statuses": sorted({s for _, s in errors}), "wall_seconds": round(wall, 1),
        "requests_per_second": round(len(done) / wall, 1),
        "server_start_seconds": round(start_seconds, 1), "first_map_seconds": round(first_map, 1),
        "all": summary([t for _, t, _ in done]),
        "by_kind": {k: summary([t for kk, t, _ in done if kk == k]) for k in KINDS if any(kk == k for kk, _, _ in done)},
        "machine": {"cpu": next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                                 if line.startswith("model name")), platform.processor()),
                    "cores": os.cpu_count(), "python": platform.python_version(),
                    "load_average_before": round(load_before, 2), "load_average_after": round(os.getloadavg()[0], 2)},
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("requests", "errors", "all", "requests_per_second")}))
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
