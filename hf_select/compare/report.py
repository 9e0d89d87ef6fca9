"""Write a comparison: `compare.json` (everything), `report.md` (the tables and verdicts) and one plot per
metric under `assets/` (the selection's scores as points over the controls' scores), into one folder:
by default `<selection folder>/compare/`.

Example:
    >>> from hf_select.compare.stats import compare_scores
    >>> c = compare_scores("heldout/loss", [1.0], [2.0, 2.5], higher_is_better=False)
    >>> print(comparison_table([c]).splitlines()[2])
    | heldout/loss | 1 | 2.25 ± 0.3536 | +1.25 [+1, +1.5] | 0 | 0.333 | not distinguishable from random |
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..card.against import plot_file
from ..plots import DPI, POOL_COLOR, SUBSET_COLOR
from .stats import MetricComparison

REPORT_FILE = "report.md"
JSON_FILE = "compare.json"
DRY_RUN_FILE = "dry-run.json"
"""A dry run's estimate goes here, never over a real result's `compare.json` (which the card reads)."""


def _g(x: float) -> str:
    return "nan" if not math.isfinite(x) else f"{x:.4g}"


def comparison_table(comparisons: list[MetricComparison]) -> str:
    lines = [
        "| metric | selection | controls mean ± sd | better by (95% CI) | U | p (one-sided) | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in comparisons:
        verdict = "beats random" if c.beats_random else "not distinguishable from random"
        sel = ", ".join(_g(x) for x in c.selection)
        lines.append(
            f"| {c.metric} | {sel} | {_g(c.controls_mean)} ± {_g(c.controls_std)} | {c.difference:+.4g} "
            f"[{c.interval[0]:+.4g}, {c.interval[1]:+.4g}] | {_g(c.u_statistic)} | {c.p_value:.3g} | {verdict} |"
        )
    return "\n".join(lines)


def proxies_table(proxies: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| subset | rows | SFT rows kept | SFT tokens | response tokens | mean tokens/row | mean cosine distance "
        "| cluster coverage | top source |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, p in proxies.items():
        sft = p.get("sft", {})
        tokens = p.get("tokens", {}).get("mean")
        sources = p.get("sources") or {}
        top = next(iter(sources.items()), None)
        cells = [
            name, f"{p['rows']:,}",
            *((f"{sft[k]:,}" if sft else "-") for k in ("examples", "tokens", "response_tokens")),
            _g(tokens) if tokens is not None else (_g(sft["tokens"] / max(1, sft["examples"])) if sft else "-"),
            _g(p["mean_cosine_distance"]) if "mean_cosine_distance" in p else "-",
            f"{p['cluster_coverage']:.2f} of {p['clusters']}" if "cluster_coverage" in p else "-",
            f"{top[0]} ({top[1]:.0%})" if top else "-",
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_report(result: Any, plots: dict[str, str] | None = None) -> str:
    r = result
    s = r.settings
    est = r.estimate
    out = [
        f"# Against random: {r.selection['name']}" + (f" ({r.selection['path']})" if r.selection["path"] else ""),
        "",
    ]
    out.append(
        f"Base model `{s['model']}` fine-tuned on the selection ({r.selection['rows']:,} rows) and on each of "
        f"{len(r.controls)} random controls of the same size, with the same settings and seeds {r.seeds}: "
        f"epochs {s['epochs']:g}, lr {s['learning_rate']:g} ({s['lr_scheduler']}, warmup {s['warmup']:g}), "
        f"batch {s['batch_size']} x {s['gradient_accumulation']}, max length {s['max_length']}, "
        f"template {s['template']}."
    )
    out.append("")
    if r.dry_run:
        out.append(
            f"**Dry run**: {est['runs_to_train']} of {est['runs']} runs to train; {est['parameters']:,} parameters; "
            f"about {est['flops']:.3g} FLOPs, **{est['gpu_hours']:.3g} GPU hours** at {est['gpu_tflops_assumed']:g} "
            "TFLOP/s sustained. Nothing was trained."
        )
    else:
        out += ["## Verdict", ""] + [f"- {v}" for v in r.verdicts()] + ["", comparison_table(r.comparisons), ""]
        out.append(
            "One-sided Mann-Whitney U of the selection's scores against the controls' (scipy); the interval is a "
            "percentile bootstrap of the difference of means, oriented so that positive means the selection is better."
        )
        for metric, path in (plots or {}).items():
            out += ["", f"![{metric}]({path})"]
    out += ["", "## Evaluations", ""]
    for e in r.evals:
        out.append(f"- `{e['name']}`: {e['rows']:,} rows (fingerprint `{e['fingerprint']}`)")
    out += ["", "## Cheap proxies (no training)", "", proxies_table(r.proxies), ""]
    out.append(
        "SFT rows kept: rows with a response token within the max length (the others are not trained on); "
        "tokens after that cut. Mean tokens/row: the `n_tokens` column where present."
    )
    if not r.dry_run:
        out += [
            "",
            "## Runs",
            "",
            "| subset | seed | run | reused from cache | train loss | seconds |",
            "|---|---|---|---|---|---|",
        ]
        for run in r.runs:
            loss = run["train"]["metrics"].get("train_loss")
            out.append(
                f"| {run['subset']} | {run['seed']} | `{run['fingerprint']}` | {'yes' if run['cached'] else 'no'} | "
                f"{_g(loss) if loss is not None else '-'} | {run['train']['seconds']:.1f} |"
            )
    return "\n".join(out) + "\n"


def score_plot(c: MetricComparison, path: Path) -> Path:
    """The controls' scores as grey points (with their mean), the selection's as orange ones."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 2.2), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    offsets = np.linspace(-0.15, 0.15, len(c.controls)) if len(c.controls) > 1 else np.zeros(1)
    ax.scatter(c.controls, offsets, color=POOL_COLOR, label=f"random controls ({len(c.controls)})", zorder=2)
    ax.axvline(c.controls_mean, color=POOL_COLOR, linestyle="--", linewidth=1, label="controls mean")
    ax.scatter(
        c.selection, np.zeros(len(c.selection)), color=SUBSET_COLOR, s=80, marker="D", label="selection", zorder=3
    )
    direction = "higher" if c.higher_is_better else "lower"
    ax.set_xlabel(f"{c.metric} ({direction} is better; p = {c.p_value:.3g})", parse_math=False)
    ax.set_yticks([])
    ax.set_ylim(-0.5, 0.5)
    ax.legend(frameon=False, fontsize=8, loc="upper right")
    ax.spines[["top", "right", "left"]].set_visible(False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", metadata={"Software": None})
    return path


def write_report(result: Any, folder: str | os.PathLike[str]) -> Path:
    """Write `compare.json`, `report.md` and `assets/compare-*.png` into `folder`; returns the report's path.
    A dry run writes only `dry-run.json` (returned): a real result already there stays as it is."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if result.dry_run:
        path = folder / DRY_RUN_FILE
        path.write_text(json.dumps(result.to_dict(), indent=2, default=str) + "\n", encoding="utf-8")
        return path
    plots = {}
    for c in result.comparisons:
        name = plot_file(c.metric)
        score_plot(c, folder / "assets" / name)
        plots[c.metric] = f"assets/{name}"
    (folder / JSON_FILE).write_text(json.dumps(result.to_dict(), indent=2, default=str) + "\n", encoding="utf-8")
    path = folder / REPORT_FILE
    path.write_text(render_report(result, plots), encoding="utf-8")
    return path
