"""Does a selection beat random? Fine-tune the same base model on the selection and on each random control,
evaluate every model, and test the selection's scores against the controls' (one-sided Mann-Whitney U), as
the study did; with cheap proxies (tokens, diversity, source mix) that need no training.

Modules: `train` (the SFT runs, cached), `sft` (TRL's SFTTrainer), `evals` (held-out loss, exact match),
`benchmarks` (HumanEval, lm-eval), `mtbench`, `metrics` (the shipped
`evaluate` scripts), `stats`, `proxies`, `estimate` (`--dry-run`), `report`, `runner` (`compare`).

Example:
    >>> from hf_select.compare import compare
    >>> result = compare("longest-200", ["longest-200-controls"], model="embedded:smollm2",
    ...                  evals=["heldout:100"])  # doctest: +SKIP
    >>> print("\\n".join(result.verdicts()))  # doctest: +SKIP
    heldout/loss: not distinguishable from random (p = 0.5; with 1 vs 3 scores no p below 0.25 is possible)
"""

from .runner import BenchmarkOptions, CompareResult, compare
from .stats import MetricComparison, compare_scores
from .train import TrainSettings

__all__ = ["BenchmarkOptions", "CompareResult", "MetricComparison", "TrainSettings", "compare", "compare_scores"]
