"""Speed of mixvae on this machine: matmul peak, training and prediction throughput, memory, CLI start.

Prints a markdown table (the figures BENCHMARKS.md quotes) and writes it, with the command and the
machine, to ``benchmarks/results/speed.md`` and ``speed.json``::

    python benchmarks/speed.py            # full run (several minutes)
    python benchmarks/speed.py --quick    # under about two minutes
    python benchmarks/speed.py --profile  # also print torch.profiler's top ops of one seed step
    python benchmarks/speed.py --only conv --threads 1  # batched conv experts vs a loop: speed-conv.md/json

Throughput figures are the best of several interleaved repetitions, so that a busy machine
disturbs the ratios (measured side by side) less than the absolute numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def machine(threads: int) -> dict[str, Any]:
    import torch

    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "threads": threads,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "python": platform.python_version(),
        "load_average_1min_at_start": os.getloadavg()[0],  # above 0 when other work shares the machine
    }


def best_time(fn: Callable[[], None], seconds: float, min_reps: int = 3) -> float:
    """Best wall time of one call of fn over about ``seconds`` of repetitions."""
    best, spent, reps = float("inf"), 0.0, 0
    while spent < seconds or reps < min_reps:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        best, spent, reps = min(best, dt), spent + dt, reps + 1
    return best


def interleaved(fns: dict[str, Callable[[], None]], rounds: int, calls: int) -> dict[str, float]:
    """Best time per call of each fn, taking turns round by round so that load hits all alike."""
    best = {k: float("inf") for k in fns}
    for f in fns.values():  # warm up
        f()
        f()
    for _ in range(rounds):
        for k, f in fns.items():
            t0 = time.perf_counter()
            for _ in range(calls):
                f()
            best[k] = min(best[k], (time.perf_counter() - t0) / calls)
    return best


# ------------------------------------------------------------------------------------------ matmul
def matmul_peak(quick: bool) -> dict[str, float]:
    """GFLOP/s of dense float32 matmuls of the model's shapes and of large squares."""
    import torch

    shapes = [(100, 784, 1280), (100, 1280, 784), (1280, 100, 784), (256, 784, 5120), (1000, 1000, 1000),
              (2048, 2048, 2048)]
    out = {}
    for m, k, n in shapes:
        a, b = torch.randn(m, k), torch.randn(k, n)
        t = best_time(lambda a=a, b=b: a @ b, 0.3 if quick else 1.5)
        out[f"{m}x{k} @ {k}x{n}"] = 2 * m * k * n / t / 1e9
    return out


# ------------------------------------------------------------------------------------------ model
def forward_macs(module) -> int:
    """Multiply-accumulates of one image's forward pass, counted from the layer shapes."""
    from torch import nn

    from mixvae.nets import ExpertLinear

    macs = 0
    for m in module.modules():
        if isinstance(m, ExpertLinear):
            macs += m.n_experts * m.in_features * m.out_features
        elif isinstance(m, nn.Linear):
            macs += m.in_features * m.out_features
    return macs


def train_step_fn(module, batch: Callable[[], Any], n_components: int, latent: int):
    import torch

    from mixvae.train import make_adam

    opt = make_adam(module.parameters(), 1e-3)
    gen = torch.Generator().manual_seed(0)

    def step() -> None:
        x = batch()
        noise = torch.randn(n_components, x.shape[0], latent, generator=gen)
        loss = module.loss(x, noise).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def batches(images, batch_size: int):
    """An endless cycle of in-memory float batches (B, D) in random order."""
    import torch

    x = torch.as_tensor(images).reshape(len(images), -1)
    gen = torch.Generator().manual_seed(0)
    state = {"order": torch.randperm(len(x), generator=gen), "i": 0}

    def next_batch():
        i = state["i"]
        if i + batch_size > len(x):
            state["order"], i = torch.randperm(len(x), generator=gen), 0
        state["i"] = i + batch_size
        return x[state["order"][i:i + batch_size]].float().div_(255.0)

    return next_batch


def fit_throughput(cfg, images, steps: tuple[int, int]) -> float:
    """Images per second inside ``mixvae.train.fit``: the difference of two runs of a and b steps,
    so that building the model (and, for the default preset, the neighbour search) cancels out."""
    import dataclasses

    from mixvae.train import Runtime, fit

    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=1))
    times = []
    for n in steps:
        t0 = time.perf_counter()
        fit(cfg, images, log=None, runtime=Runtime(progress=False, max_steps=n))
        times.append(time.perf_counter() - t0)
    return (steps[1] - steps[0]) * cfg.train.batch_size / max(times[1] - times[0], 1e-9)


def training(args, data, peak: float) -> list[dict[str, Any]]:
    import torch
    from naive import NaiveMixture

    from mixvae.config import preset
    from mixvae.model import MixtureModule

    rows = []
    rounds, calls = (3, 5) if args.quick else (10, 10)
    seed, default = preset("seed"), preset("default")
    torch.manual_seed(0)
    seed_module = MixtureModule(seed.model)
    naive = NaiveMixture(seed.model.n_components)
    naive_opt = torch.optim.Adam(naive.parameters(), lr=1e-3)
    seed_batch = batches(data.images, 100)
    gen = torch.Generator().manual_seed(0)

    def naive_step() -> None:
        x = seed_batch()
        loss = naive.loss(x, torch.randn(seed.model.n_components, x.shape[0], seed.model.latent_dim, generator=gen))
        naive_opt.zero_grad(set_to_none=True)
        loss.backward()
        naive_opt.step()

    fns = {
        "seed": train_step_fn(seed_module, seed_batch, seed.model.n_components, seed.model.latent_dim),
        "naive": naive_step,
    }
    best = interleaved(fns, rounds, calls)
    flops_seed = 3 * 2 * forward_macs(seed_module)
    for name, label in (("seed", "seed preset, batched experts (MixtureModule + Adam)"),
                        ("naive", "seed model as a Python loop over 10 nn.Module VAEs (benchmarks/naive.py)")):
        ips = 100 / best[name]
        rows.append({"what": label, "batch": 100, "images_per_s": ips, "model_gflops": ips * flops_seed / 1e9,
                     "of_peak": ips * flops_seed / 1e9 / peak})
    rows.append({"what": "ratio batched / naive", "ratio": best["naive"] / best["seed"]})

    torch.manual_seed(0)
    dmod = MixtureModule(default.model)
    bs = default.train.batch_size
    step = train_step_fn(dmod, batches(data.images, bs), default.model.n_components, default.model.latent_dim)
    t = interleaved({"d": step}, max(rounds // 2, 2), max(calls // 2, 2))["d"]
    flops = 3 * 2 * forward_macs(dmod)
    ips = bs / t
    rows.append({"what": f"default preset (MixtureModule + Adam, {default.model.likelihood}, loss only)", "batch": bs,
                 "images_per_s": ips, "model_gflops": ips * flops / 1e9, "of_peak": ips * flops / 1e9 / peak})

    sub = data.images[:10000]  # fit's per-step cost does not depend on N; its setup does
    steps = (5, 20) if args.quick else (20, 120)
    for cfg, name in ((seed, "seed"), (default, "default")):
        ips = fit_throughput(cfg, sub, steps)
        mods = MixtureModule(cfg.model)
        f = 3 * 2 * forward_macs(mods)
        rows.append({"what": f"{name} preset via mixvae.train.fit (whole loop, {steps[1] - steps[0]} steps)",
                     "batch": cfg.train.batch_size, "images_per_s": ips, "model_gflops": ips * f / 1e9,
                     "of_peak": ips * f / 1e9 / peak})
    return rows


# ------------------------------------------------------------------------------------------ predict
def prediction(test, quick: bool) -> list[dict[str, Any]]:
    import numpy as np
    import torch

    from mixvae import cli
    from mixvae.checkpoint import save_weights
    from mixvae.config import preset
    from mixvae.inference import predict_proba
    from mixvae.model import MixtureModule
    from mixvae.runfolder import WEIGHTS_FILE, save_config

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        run.mkdir()
        for name in ("seed", "default"):
            cfg = preset(name)
            torch.manual_seed(0)
            module = MixtureModule(cfg.model).eval()
            t = best_time(lambda module=module: predict_proba(module, test.images, batch_size=10000), 1.0)
            rows.append({"what": f"predict_proba, 10k test images, {name} preset", "seconds": t,
                         "images_per_s": len(test.images) / t})
            save_config(run, cfg)
            save_weights(run / WEIGHTS_FILE, module, cfg)
            npy = Path(tmp) / "test.npy"
            np.save(npy, np.asarray(test.images))

            def cli_predict(npy: Path = npy) -> None:
                with contextlib.redirect_stdout(io.StringIO()):
                    cli.main(["predict", str(run), str(npy)])

            from mixvae.checkpoint import load_run

            total = best_time(cli_predict, 1.0)
            load = best_time(lambda: load_run(run), 0.5)
            rows.append({"what": f"mixvae predict RUN test.npy (10k), after the model is loaded, {name} preset",
                         "seconds": max(total - load, 0.0)})
            if quick and name != "seed":
                continue
            exe = _mixvae_command()
            t0 = time.perf_counter()
            subprocess.run([*exe, "predict", str(run), str(npy)], check=True, stdout=subprocess.DEVNULL)
            rows.append({"what": f"mixvae predict RUN test.npy (10k), whole command, {name} preset",
                         "seconds": time.perf_counter() - t0})
    return rows


def _mixvae_command() -> list[str]:
    script = Path(sys.executable).with_name("mixvae")
    return [str(script)] if script.exists() else [sys.executable, "-m", "mixvae"]


# ------------------------------------------------------------------------------------------ CLI start
def cli_start() -> list[dict[str, Any]]:
    exe = _mixvae_command()
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run([*exe, "--help"], check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, mixvae, mixvae.cli; print('torch' in sys.modules)"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    return [{"what": "mixvae --help (best of 5)", "seconds": min(times)},
            {"what": "torch imported by `import mixvae.cli`", "value": probe}]


# ------------------------------------------------------------------------------------------ memory
def memory_probe(name: str, steps: int, threads: int) -> None:
    """Run in a child process: print the growth of peak RSS (MiB) over ``steps`` training steps."""
    import torch

    torch.set_num_threads(threads)
    from mixvae.config import preset
    from mixvae.data import load
    from mixvae.model import MixtureModule

    data = load("mnist", "train")
    cfg = preset(name)
    batch = batches(data.images, cfg.train.batch_size)
    import dataclasses

    small = dataclasses.replace(cfg.model, n_components=2, hidden=(8,), manager_hidden=(8,))
    warm = train_step_fn(MixtureModule(small), batch, 2, small.latent_dim)
    warm()  # load torch's kernels and libraries first: their pages are not the training's memory
    before = _reset_peak_rss()
    module = MixtureModule(cfg.model)
    step = train_step_fn(module, batch, cfg.model.n_components, cfg.model.latent_dim)
    for _ in range(steps):
        step()
    after = _peak_rss()
    print(json.dumps({"before_mib": before / 1024, "after_mib": after / 1024}))


def _status_kib(field: str) -> int | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def _reset_peak_rss() -> float:
    """Reset the process's peak RSS (Linux: /proc/self/clear_refs) and return the current RSS in KiB,
    so that the peak read later is the peak of what follows, not of loading the data."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return float(_status_kib("VmRSS") or 0)
    except OSError:  # no reset: fall back to the lifetime peak
        return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _peak_rss() -> float:
    hwm = _status_kib("VmHWM")
    return float(hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def memory(threads: int) -> list[dict[str, Any]]:
    rows = []
    for name in ("seed", "default"):
        out = subprocess.run([sys.executable, __file__, "--memory-probe", name, "--threads", str(threads)],
                             check=True, capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        rows.append({"what": f"peak RSS growth of training, {name} preset (model + Adam + activations)",
                     "mib": r["after_mib"] - r["before_mib"], "rss_mib": r["after_mib"]})
    return rows


# ------------------------------------------------------------------------------------------ profile
def profile_seed(data, top: int = 15) -> str:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from mixvae.config import preset
    from mixvae.model import MixtureModule

    cfg = preset("seed")
    torch.manual_seed(0)
    step = train_step_fn(MixtureModule(cfg.model), batches(data.images, 100), 10, cfg.model.latent_dim)
    for _ in range(5):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(20):
            step()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top)


# ------------------------------------------------------------------------------------------ report
def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| measurement | batch | images/s | model GFLOP/s | % of matmul peak | seconds / other |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        other = ""
        if "seconds" in r:
            other = f"{r['seconds']:.3f} s"
        elif "ratio" in r:
            other = f"{r['ratio']:.2f}x"
        elif "mib" in r:
            other = f"+{r['mib']:.0f} MiB (peak RSS {r['rss_mib']:.0f} MiB)"
        elif "value" in r:
            other = str(r["value"])
        elif "gflops" in r:
            other = f"{r['gflops']:.1f} GFLOP/s"
        lines.append("| {} | {} | {} | {} | {} | {} |".format(
            r["what"], r.get("batch", ""),
            f"{r['images_per_s']:,.0f}" if "images_per_s" in r else "",
            f"{r['model_gflops']:.1f}" if "model_gflops" in r else "",
            f"{100 * r['of_peak']:.0f}%" if "of_peak" in r else "", other))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="short repetitions (under about two minutes)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own choice)")
    p.add_argument("--profile", action="store_true", help="print torch.profiler's top ops of the seed step")
    p.add_argument("--out", type=Path, default=HERE / "results", help="folder for speed.md and speed.json")
    p.add_argument("--only", choices=["conv"], help="only the conv experts' rows, written to speed-conv.md/json")
    p.add_argument("--memory-probe", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    if args.memory_probe:
        memory_probe(args.memory_probe, 20, threads)
        return 0
    from mixvae.data import load

    t_start = time.perf_counter()
    info = machine(threads)
    data, test = load("mnist", "train"), load("mnist", "test")
    rows: list[dict[str, Any]] = []
    from naive_conv import conv_rows

    if args.only == "conv":
        return write(args, argv, info, threads, t_start, conv_rows(data.images[:10000], args.quick, interleaved,
                                                                   batches), "speed-conv")
    peaks = matmul_peak(args.quick)
    peak = max(peaks.values())
    for shape, g in peaks.items():
        rows.append({"what": f"torch float32 matmul {shape}", "gflops": g})
    rows.append({"what": "**matmul peak (best of the above)**", "gflops": peak})
    rows += training(args, data, peak)
    rows += conv_rows(data.images[:10000], args.quick, interleaved, batches)
    rows += prediction(test, args.quick)
    rows += memory(threads)
    rows += cli_start()
    return write(args, argv, info, threads, t_start, rows, "speed")


def write(args, argv, info, threads: int, t_start: float, rows: list[dict[str, Any]], name: str) -> int:
    """Print the table and write it, with the command and the machine, to ``<name>.md`` and ``.json``."""
    command = "python benchmarks/speed.py " + " ".join(sys.argv[1:] if argv is None else argv)
    head = (f"Command: `{command.strip()}`  \n"
            f"Machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']} ({info['cpu_capability']}), "
            f"{threads} threads, Python {info['python']}; {time.perf_counter() - t_start:.0f} s in all; "
            f"load average {info['load_average_1min_at_start']:.1f} at the start (other work shared the machine "
            "when above 0).\n")
    text = head + "\n" + table(rows) + "\n"
    if args.profile:
        from mixvae.data import load

        prof = profile_seed(load("mnist", "train"))
        text += "\nTop ops of 20 seed training steps (torch.profiler, self CPU time):\n\n```\n" + prof + "\n```\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.md").write_text(text)
    (args.out / f"{name}.json").write_text(json.dumps({"command": command.strip(), "machine": info, "rows": rows},
                                                    indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
