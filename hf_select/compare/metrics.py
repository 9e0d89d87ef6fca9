"""The `evaluate` metrics `compare` uses, loaded from scripts shipped in `hf_select/compare/metrics/`
(`evaluate.load("exact_match")` would fetch from the Hub, which is not reachable at run time).

Example:
    >>> load_metric("exact_match").compute(predictions=["Paris ", "4"], references=["paris", "5"])["exact_match"]
    0.5
    >>> round(load_metric("response_perplexity").compute(nll=[2.0, 4.0], tokens=[2, 4])["loss"], 3)
    1.0
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from ..errors import InputError

METRICS_DIR = Path(__file__).resolve().parent / "metrics"


@cache
def load_metric(name: str) -> Any:
    """An `evaluate.EvaluationModule` from the script `metrics/<name>/<name>.py`."""
    import evaluate

    script = METRICS_DIR / name / f"{name}.py"
    if not script.is_file():
        known = sorted(p.name for p in METRICS_DIR.iterdir() if p.is_dir())
        raise InputError(f"no shipped metric {name!r}; shipped: {', '.join(known)}")
    return evaluate.load(str(script))
