"""Seconds per epoch per 10,000 colour images, and peak memory, of training at 32x32x3 and 64x64x3.

Each configuration trains inside ``mixvae.train.fit`` on 10,000 random RGB images (throughput
does not depend on the pixels) in its own process, twice, for ``a`` and ``b`` steps: the
difference of the two wall times is the cost of ``b - a`` steps, so building the model cancels
out; the neighbour graph, built by a first run of ``a`` steps, is loaded from its run folder by
both (its build time is reported apart). Peak memory is the process's peak resident set size::

    python benchmarks/colour_speed.py --threads 1      # writes benchmarks/results/colour_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SIDES = (32, 64)
NETWORKS = {"mlp": {}, "conv": {"expert_network": "conv", "conv_channels": [16, 32]}}


def measure(side: int, network: str, preset: str, steps: tuple[int, int], threads: int) -> dict[str, Any]:
    """In this process: images per second of ``fit`` and the peak RSS."""
    import dataclasses

    import numpy as np
    import torch

    from mixvae.config import config_from_dict
    from mixvae.config import preset as make_preset
    from mixvae.train import Runtime, fit

    torch.set_num_threads(threads)
    images = np.random.default_rng(0).integers(0, 256, (10000, side, side, 3), dtype=np.uint8)
    cfg = make_preset(preset, image_shape=(side, side))
    cfg = config_from_dict({"model": {"channels": 3, **NETWORKS[network]}}, base=cfg)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=1))
    times = []
    with tempfile.TemporaryDirectory() as tmp:  # the first run builds the neighbour graph, the others load it
        for n in (steps[0], *steps):
            t0 = time.perf_counter()
            fit(cfg, images, log=None, run_dir=Path(tmp), runtime=Runtime(progress=False, max_steps=n))
            times.append(time.perf_counter() - t0)
    ips = (steps[1] - steps[0]) * cfg.train.batch_size / max(times[2] - times[1], 1e-9)
    return {"side": side, "network": network, "preset": preset, "batch": cfg.train.batch_size,
            "images_per_s": ips, "seconds_per_10k": 10000 / ips, "graph_s": times[0] - times[1],
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "steps": list(steps), "wall_s": times}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--preset", default="default")
    p.add_argument("--steps", type=int, nargs=2, default=(5, 25), help="the two step counts a < b")
    p.add_argument("--one", nargs=2, metavar=("SIDE", "NETWORK"), help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=HERE / "results" / "colour_speed.json")
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(measure(int(args.one[0]), args.one[1], args.preset, tuple(args.steps), args.threads)))
        return 0
    from speed import machine

    command = "python benchmarks/colour_speed.py " + " ".join(sys.argv[1:] if argv is None else argv)
    info = machine(args.threads)
    info["load_average_1min_at_start"] = os.getloadavg()[0]
    rows: list[dict[str, Any]] = []
    for side in SIDES:
        for network in NETWORKS:
            out = subprocess.run([sys.executable, __file__, "--one", str(side), network, "--preset", args.preset,
                                  "--threads", str(args.threads), "--steps", *map(str, args.steps)],
                                 check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            r = rows[-1]
            print(f"{side}x{side}x3 {network}: {r['seconds_per_10k']:.1f} s per 10,000 images, "
                  f"peak RSS {r['peak_rss_mib']:.0f} MiB", flush=True)
            # written after every row, so that a run stopped early keeps what it measured
            args.out.write_text(json.dumps({"command": command.strip(), "machine": info, "networks": NETWORKS,
                                            "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(main())
