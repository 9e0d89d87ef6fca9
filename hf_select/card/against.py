"""The card's "Against random" section: what `hf-select compare` found, read from the selection folder's
`compare/compare.json` (the default output of `compare`), and the card re-rendered with it.

The section is data like the rest of the card (the template escapes it); a folder without a comparison,
or with only a dry run's, renders as before. The plots are linked relative to the card
(`compare/assets/...`), where `push` uploads them with the rest of the folder.

Example:
    >>> import json, tempfile
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> (folder / "compare").mkdir()
    >>> c = {"metric": "heldout/loss", "selection": [1.0], "controls": [2.0, 2.5], "controls_mean": 2.25,
    ...      "controls_std": 0.35, "p_value": 1 / 3, "verdict": "heldout/loss: not distinguishable from random"}
    >>> data = {"selection": {"rows": 8}, "controls": [{}, {}], "settings": {"model": "tiny"}, "seeds": [0],
    ...         "comparisons": [c], "dry_run": False}
    >>> _ = (folder / "compare" / "compare.json").write_text(json.dumps(data))
    >>> section = load_against(folder)
    >>> section["metrics"][0]["controls_mean"], section["metrics"][0]["plot"], section["controls"]
    (2.25, None, 2)
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from ..errors import InputError

COMPARE_DIR = "compare"
COMPARE_JSON = f"{COMPARE_DIR}/compare.json"
"""Where `hf-select compare` writes its record in a selection folder (and where the card reads it)."""


def plot_file(metric: str) -> str:
    """The plot's file name of one metric, under the comparison's `assets/`."""
    return "compare-" + "".join(ch if ch.isalnum() else "-" for ch in metric) + ".png"


def load_against(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The "Against random" section of the selection folder `folder`: None without `compare/compare.json`
    or when it holds no comparison (a dry run); InputError naming the file when it cannot be read."""
    folder = Path(folder)
    path = folder / COMPARE_JSON
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("dry_run") or not data.get("comparisons"):
            return None
        metrics = []
        for c in data["comparisons"]:
            plot = f"{COMPARE_DIR}/assets/{plot_file(str(c['metric']))}"
            metrics.append(
                {
                    "metric": str(c["metric"]),
                    "selection": [_number(x) for x in c["selection"]],
                    "controls_mean": _number(c["controls_mean"]),
                    "controls_std": _number(c["controls_std"]),
                    "p_value": _number(c["p_value"]),
                    "verdict": str(c["verdict"]),
                    "plot": plot if (folder / plot).is_file() else None,
                }
            )
        return {
            "model": str(data["settings"]["model"]),
            "rows": int(data["selection"]["rows"]),
            "controls": len(data["controls"]),
            "seeds": [int(s) for s in data["seeds"]],
            "metrics": metrics,
            "proxies": [_proxy(name, proxy) for name, proxy in (data.get("proxies") or {}).items()],
        }
    except (json.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as err:
        raise InputError(
            f"{path} is not a comparison written by `hf-select compare` ({type(err).__name__}: {err}); "
            "run the comparison again or delete it"
        ) from err


def refresh_readme(folder: str | os.PathLike[str]) -> Path | None:
    """Render the folder's README.md again from its `card.json`, with its "Against random" section;
    None (nothing written) when the folder has no card context."""
    from .context import CardContext
    from .render import render_card

    folder = Path(folder)
    context = CardContext.load(folder)
    if context is None:
        return None
    path = folder / "README.md"
    render_card(context, against_random=load_against(folder)).save(path)
    return path


def _proxy(name: str, p: dict[str, Any]) -> dict[str, Any]:
    """One subset's cheap proxies (no training) for the card; None where the comparison had no such column."""
    sft = p.get("sft") or {}

    def optional(value: Any) -> float | None:
        return None if value is None else _number(value)

    return {
        "name": "this subset" if name == "selection" else str(name),
        "rows": int(p["rows"]),
        "sft_examples": None if "examples" not in sft else int(sft["examples"]),
        "response_tokens": None if "response_tokens" not in sft else int(sft["response_tokens"]),
        "mean_tokens": optional((p.get("tokens") or {}).get("mean")),
        "mean_cosine_distance": optional(p.get("mean_cosine_distance")),
        "cluster_coverage": optional(p.get("cluster_coverage")),
    }


def _number(value: Any) -> float:
    x = float(value)
    return x if math.isfinite(x) else math.nan
