"""A run's report: one self-contained HTML page (figures inlined as data URIs) that opens offline.

``write_report(run_dir)`` reads what is in the run folder (config.yaml, metrics.jsonl, eval.json,
the PNG figures) and writes ``report.html``; it computes nothing, so it is quick and never needs
the data. ``mixvae report RUN`` first evaluates the run and draws the figures when they are missing.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import yaml

from mixvae.atomic import atomic_write
from mixvae.config import load_config
from mixvae.figures import FIGURES
from mixvae.runfolder import CONFIG_FILE, REPORT_FILE, matched_classes, read_eval, read_metrics

__all__ = ["write_report"]

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f6f7f9;color:#222}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:1.6em;margin:0 0 4px}h2{font-size:1.2em;margin:28px 0 10px;border-bottom:1px solid #ddd;padding-bottom:4px}
.sub{color:#666;margin-bottom:16px}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid #e1e4e8;border-radius:8px;padding:10px 16px;min-width:120px}
.card .v{font-size:1.5em;font-weight:600}.card .k{color:#666;font-size:.85em}
table{border-collapse:collapse;background:#fff;font-size:.85em}
td,th{border:1px solid #e1e4e8;padding:3px 8px;text-align:right}th{background:#f0f2f5}
td:first-child,th:first-child{text-align:left}
figure{background:#fff;border:1px solid #e1e4e8;border-radius:8px;margin:0 0 16px;padding:10px}
figure img{max-width:100%;height:auto;display:block;margin:0 auto}
figcaption{color:#555;font-size:.9em;margin-top:6px;text-align:center}
pre{background:#fff;border:1px solid #e1e4e8;border-radius:8px;padding:10px;font-size:.8em;overflow:auto}
.scroll{max-height:420px;overflow:auto}
"""


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:.1f}"
    return html.escape(str(v))


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cards(ev: dict[str, Any], records: list[dict[str, Any]], K: int) -> str:
    main = ev.get("test") or ev.get("train") or {}
    split = "test" if "test" in ev else "train"
    last = records[-1] if records else {}
    items: list[tuple[str, str]] = []
    for key, name in (("acc", "ACC"), ("nmi", "NMI"), ("ari", "ARI")):
        if key in main:
            items.append((f"{split} {name}", f"{main[key]:.4f}"))
        elif f"test_{key}" in last:
            items.append((f"test {name} (last epoch)", f"{last[f'test_{key}']:.4f}"))
    used = main.get("experts_used", last.get("experts_used"))
    if used is not None:
        items.append(("experts used", f"{used}/{K}"))
    if "log_likelihood" in ev:
        ll = ev["log_likelihood"]
        items.append((f"log-likelihood bound (IW k={ll['iw_samples']})", f"{ll['mean_nats']:.2f} nats"))
    if "loss" in last:
        items.append(("final training loss", f"{last['loss']:.3f}"))
    if records:
        items.append(("epochs", str(last.get("epoch", len(records)))))
    return '<div class="cards">' + "".join(
        f'<div class="card"><div class="v">{html.escape(v)}</div><div class="k">{html.escape(k)}</div></div>'
        for k, v in items) + "</div>"


def _eval_tables(ev: dict[str, Any], K: int) -> str:
    rows = []
    for split in ("test", "train"):
        r = ev.get(split)
        if r:
            rows.append([split, r.get("n", ""), r.get("acc", "-"), r.get("nmi", "-"), r.get("ari", "-"),
                         f"{r.get('experts_used', '-')}/{K}", r.get("routing_entropy", "-")])
    out = _table(["split", "images", "ACC", "NMI", "ARI", "experts used", "routing entropy"], rows) if rows else ""
    main = ev.get("test") or ev.get("train") or {}
    if "usage" in main:
        matched = matched_classes(ev)
        per = [[k, main["usage"][k], *([matched[k], main["purity"][k]] if matched is not None else [])]
               for k in range(len(main["usage"]))]
        head = ["expert", "share of images"] + (["matched class", "purity"] if "matched_class" in main else [])
        out += "<h3>Experts</h3>" + _table(head, per)
    return out


def _history_table(records: list[dict[str, Any]]) -> str:
    keys = [k for k in ("epoch", "step", "loss", "mixture", "recon", "kl", "balance", "test_acc", "test_nmi",
                        "test_ari", "experts_used", "routing_entropy", "resplits", "seconds")
            if any(k in r for r in records)]
    rows = [[r.get(k, "") for k in keys] for r in records]
    return f'<div class="scroll">{_table(keys, rows)}</div>'


def _figure(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{html.escape(path.name)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)} ({html.escape(path.name)})</figcaption></figure>")


def write_report(run_dir: Path) -> Path:
    """Write ``run_dir/report.html`` from the files in the run folder; return its path."""

    run_dir = Path(run_dir)
    cfg = load_config(run_dir)
    K = cfg.model.n_components
    records = read_metrics(run_dir)
    ev = read_eval(run_dir)
    title = f"mixvae run {run_dir.resolve().name}"
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        (
            f'<div class="sub">preset <b>{html.escape(cfg.preset)}</b> · data <b>{html.escape(str(cfg.data))}</b> · '
            f"K = {K} experts · images {'×'.join(str(s) for s in cfg.model.array_shape)} · "
            f"latent {cfg.model.latent_dim}</div>"
        ),
        _cards(ev, records, K),
    ]
    if ev:
        parts += ["<h2>Evaluation</h2>", _eval_tables(ev, K)]
    figs = [_figure(run_dir / name, caption) for name, caption in FIGURES.items() if (run_dir / name).exists()]
    if figs:
        parts += ["<h2>Figures</h2>", *figs]
    if records:
        parts += ["<h2>Training, per epoch</h2>", _history_table(records)]
    config_text = (run_dir / CONFIG_FILE).read_text() if (run_dir / CONFIG_FILE).exists() else \
        yaml.safe_dump(cfg.to_dict(), sort_keys=True)
    parts += ["<h2>Configuration</h2>",
              f"<pre>{html.escape(config_text)}</pre>",
              (f"<p class='sub'>Repeat this run: <code>mixvae train --config {html.escape(str(run_dir / CONFIG_FILE))}"
               f" --out NEW</code></p>")]
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head>'
            f"<body><main>{''.join(parts)}</main></body></html>\n")
    out = run_dir / REPORT_FILE
    atomic_write(out, page.encode("utf-8"))
    return out
