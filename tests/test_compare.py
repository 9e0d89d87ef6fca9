"""`hf-select compare`: the statistics against hand numbers and scipy, the proxies, and the whole pipeline
(fine-tune, evaluate, test, report, cache) on the tiny model: a planted effect is detected, identical
subsets are not."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset
from scipy.stats import mannwhitneyu

from hf_select import InputError, select
from hf_select.card.against import plot_file, refresh_readme
from hf_select.cli import main
from hf_select.compare import TrainSettings, compare, compare_scores
from hf_select.compare.evals import parse_evals
from hf_select.compare.stats import bootstrap_interval, min_p_value
from hf_select.push import plan_folder
from hf_select.save import load_selection_folder, save_selection

# ---------------------------------------------------------------------------------------------------
# statistics
# ---------------------------------------------------------------------------------------------------


def test_one_selection_best_of_five_controls_gives_one_sixth_which_is_the_floor() -> None:
    c = compare_scores("acc", [0.9], [0.1, 0.2, 0.3, 0.4, 0.5], higher_is_better=True)
    assert c.u_statistic == 5 and c.p_value == pytest.approx(1 / 6)
    assert c.min_p_value == pytest.approx(1 / 6) and not c.beats_random
    assert "no p below 0.167 is possible" in c.verdict


def test_hand_computed_u_and_exact_p() -> None:
    # pairs where the selection is higher: 3>1, 3>2, 5>1, 5>2, 5>4 -> U = 5; of the C(5,2) = 10 equally likely
    # rank arrangements, U >= 5 happens for {4,5} and {3,5} ranks -> p = 2/10.
    c = compare_scores("acc", [3.0, 5.0], [1.0, 2.0, 4.0], higher_is_better=True)
    assert c.u_statistic == 5 and c.p_value == pytest.approx(0.2)
    # lower is better: the same numbers mirrored give the same p
    d = compare_scores("loss", [-3.0, -5.0], [-1.0, -2.0, -4.0], higher_is_better=False)
    assert d.p_value == pytest.approx(0.2) and d.difference == pytest.approx(c.difference)


@pytest.mark.parametrize(
    ("sel", "ctl", "higher"),
    [([2.1, 2.5, 1.9], [1.0, 1.5, 2.0, 2.2, 0.7, 1.1], True), ([1.0, 1.0], [1.0, 2.0, 1.0, 3.0], False)],
)
def test_matches_scipy_including_ties(sel: list[float], ctl: list[float], higher: bool) -> None:
    c = compare_scores("m", sel, ctl, higher_is_better=higher)
    ref = mannwhitneyu(sel, ctl, alternative="greater" if higher else "less")
    assert c.p_value == pytest.approx(ref.pvalue) and c.u_statistic == pytest.approx(ref.statistic)


def test_min_p_and_planted_and_identical_verdicts() -> None:
    assert min_p_value(1, 19) == pytest.approx(0.05) and min_p_value(2, 10) == pytest.approx(1 / 66)
    beat = compare_scores("loss", [1.0, 1.1], [2.0 + i / 10 for i in range(10)], higher_is_better=False)
    assert beat.beats_random and beat.verdict == f"loss: beats random at p = {beat.p_value:.3g}"
    same = compare_scores("loss", [2.0], [2.0, 2.0, 2.0], higher_is_better=False)
    assert not same.beats_random and same.p_value == 1.0 and same.interval == (0.0, 0.0)


def test_bootstrap_interval_brackets_the_difference_and_is_seeded() -> None:
    sel, ctl = [5.0], [1.0, 2.0, 3.0, 4.0]
    low, high = bootstrap_interval(sel, ctl, seed=3)
    assert low < 5.0 - np.mean(ctl) < high and low >= 5.0 - 4.0 and high <= 5.0 - 1.0
    assert (low, high) == bootstrap_interval(sel, ctl, seed=3)
    c = compare_scores("loss", [0.5], [1.0, 2.0], higher_is_better=False)
    assert c.interval[0] > 0 and c.difference == pytest.approx(1.0)  # oriented: positive is better


def test_bad_scores_and_specs_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="finite"):
        compare_scores("m", [math.nan], [1.0], higher_is_better=True)
    with pytest.raises(InputError, match="unknown kind 'bleu'"):
        parse_evals(["bleu:x"])
    with pytest.raises(InputError, match="existing local file"):
        parse_evals([f"exact:{tmp_path / 'missing.jsonl'}"])


# ---------------------------------------------------------------------------------------------------
# the pipeline on the tiny model
# ---------------------------------------------------------------------------------------------------

A_ANSWER = "The sum is {s}. Adding numbers is easy: count one by one."
B_ANSWER = "Poems about the sea rhyme light with night and shore with more, my friend."


def rows(kind: str, start: int, n: int) -> list[dict]:
    out = []
    for i in range(start, start + n):
        if kind == "a":
            q, a = f"What is {i} plus {i + 1}?", A_ANSWER.format(s=2 * i + 1)
        else:
            q, a = f"Write a short poem number {i} about the sea.", B_ANSWER
        out.append({"conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": a}], "source": kind})
    return out


def settings(model: str) -> TrainSettings:
    return TrainSettings(model=model, epochs=2, learning_rate=3e-3, max_length=96, batch_size=8, warmup=0.0)


def test_planted_effect_is_detected_and_reruns_reuse_the_cache(tiny_model: str, tmp_path: Path) -> None:
    selection = Dataset.from_list(rows("a", 0, 16))
    controls = [Dataset.from_list(rows("b", 100 * k, 16)) for k in range(1, 4)]
    eval_file = tmp_path / "a-heldout.jsonl"
    eval_file.write_text("".join(json.dumps(r) + "\n" for r in rows("a", 500, 12)))
    kw = {"settings": settings(tiny_model), "evals": [f"loss:{eval_file}"], "seeds": [0, 1]}
    cache, out = tmp_path / "cache", tmp_path / "report"
    result = compare(selection, controls, cache_dir=cache, output=out, **kw)
    (c,) = result.comparisons
    assert c.metric == "loss:a-heldout.jsonl/loss" and len(c.selection) == 2 and len(c.controls) == 6
    assert max(c.selection) < min(c.controls)  # trained on the eval's distribution: lower loss
    assert c.beats_random and c.p_value == pytest.approx(1 / 28)  # 2 vs 6 scores, none tied: the exact floor
    assert [r["cached"] for r in result.runs] == [False] * 8
    saved = json.loads((out / "compare.json").read_text())
    assert saved["comparisons"][0]["p_value"] == pytest.approx(c.p_value)
    report = (out / "report.md").read_text()
    assert (
        "beats random at p = 0.0357" in report and (out / "assets" / "compare-loss-a-heldout-jsonl-loss.png").is_file()
    )
    assert saved["proxies"]["selection"]["sources"] == {"a": 1.0} and "control 0" in saved["proxies"]

    again = compare(selection, controls, cache_dir=cache, output=out, **kw)
    assert [r["cached"] for r in again.runs] == [True] * 8
    assert again.comparisons[0].selection == c.selection and again.comparisons[0].controls == c.controls


def test_identical_subsets_are_not_distinguishable(tiny_model: str, tmp_path: Path) -> None:
    subset = Dataset.from_list(rows("a", 0, 8) + rows("b", 0, 8))
    pool = Dataset.from_list(rows("a", 0, 40) + rows("b", 0, 40))
    result = compare(
        subset, [subset, subset, subset], settings=settings(tiny_model), evals=["heldout:16"], pool=pool,
        cache_dir=tmp_path / "cache", log=lambda _: None,
    )  # fmt: skip
    (c,) = result.comparisons
    assert len(set(c.selection + c.controls)) == 1 and c.p_value == 1.0 and not c.beats_random
    assert "not distinguishable from random" in c.verdict
    assert [r["cached"] for r in result.runs] == [False, True, True, True]  # one fingerprint: trained once
    assert result.evals[0]["rows"] == 16


def test_heldout_rows_are_in_no_subset(tiny_model: str, tmp_path: Path) -> None:
    from hf_select.compare.runner import heldout_slice, load_subset

    pool = Dataset.from_list(rows("a", 0, 30))
    subsets = [load_subset(pool.select(range(0, 10)), "s"), load_subset(pool.select(range(10, 25)), "c")]
    held = heldout_slice(pool, subsets, 100, seed=0)
    assert sorted(r[0]["value"] for r in held["conversations"]) == sorted(
        r[0]["value"] for r in pool.select(range(25, 30))["conversations"]
    )
    with pytest.raises(InputError, match="nothing is left"):
        heldout_slice(pool, [load_subset(pool, "all")], 5, seed=0)


def test_cli_select_controls_then_compare_and_dry_run(
    tiny_model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pool_file = tmp_path / "pool.jsonl"
    pool_file.write_text("".join(json.dumps(r) + "\n" for r in rows("a", 0, 30) + rows("b", 0, 30)))
    scored = tmp_path / "scored"
    assert (
        main(["score", str(pool_file), "--method", "token-length", "--tokenizer", tiny_model, "-o", str(scored)]) == 0
    )
    sel = tmp_path / "longest"
    argv = ["select", str(scored), "--method", "top-k", "--column", "n_tokens", "--budget", "12", "--controls", "3"]
    assert main([*argv, "-o", str(sel)]) == 0
    common = [
        "--controls",
        f"{sel}-controls",
        "--model",
        tiny_model,
        "--eval",
        "heldout:12",
        "--cache-dir",
        str(tmp_path / "c"),
    ]
    train = ["--epochs", "1", "--learning-rate", "0.003", "--max-length", "96"]
    capsys.readouterr()
    assert main(["compare", str(sel), *common, *train, "--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert "**Dry run**: 3 of 4 runs to train" not in dry and "4 of 4 runs to train" in dry and "GPU hours" in dry
    assert not (tmp_path / "c" / "runs").exists() and not (sel / "compare" / "compare.json").exists()
    assert main(["compare", str(sel), *common, *train]) == 0
    out = capsys.readouterr().out
    assert "heldout/loss" in out and "## Cheap proxies (no training)" in out
    saved = json.loads((sel / "compare" / "compare.json").read_text())
    readme = (sel / "README.md").read_text()  # re-rendered from card.json with the comparison
    assert "## Against random: fine-tuned models" in readme and saved["comparisons"][0]["verdict"] in readme
    assert "](compare/assets/compare-heldout-loss.png)" in readme
    kept = saved["proxies"]["selection"]["sft"]["examples"]
    assert f"| this subset | 12 | {kept} |" in readme and "| random seed 2 | 12 |" in readme  # the cheap proxies
    assert [c["name"] for c in saved["controls"]] == ["random seed 0", "random seed 1", "random seed 2"]
    assert saved["settings"]["learning_rate"] == 0.003 and saved["estimate"]["runs_to_train"] == 4
    real = {name: (sel / name).read_bytes() for name in ("compare/compare.json", "compare/report.md", "README.md")}
    assert main(["compare", str(sel), *common, *train, "--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert "0 of 4 runs to train" in dry and "compare.json and report.md are left as they were" in dry
    # a dry run after a real one leaves the result, its report and the card's section as they were
    assert {name: (sel / name).read_bytes() for name in real} == real
    assert json.loads((sel / "compare" / "dry-run.json").read_text())["estimate"]["runs_to_train"] == 0
    assert main(["compare", str(sel), "--controls", str(tmp_path), "--model", tiny_model]) == 2
    assert "neither a selection folder" in capsys.readouterr().err


def test_compare_vs_random_example(tiny_model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "examples" / "compare_vs_random.py"
    spec = importlib.util.spec_from_file_location("compare_vs_random", path)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    argv = ["--rows", "40", "--budget", "8", "--controls", "2", "--heldout", "8", "--model", tiny_model]
    argv += ["--max-length", "64", "-o", str(tmp_path / "demo")]
    assert example.main(argv) == 0
    printed = capsys.readouterr().out
    assert "heldout/loss: not distinguishable from random" in printed  # 1 vs 2 scores: p >= 1/3 always
    saved = json.loads((tmp_path / "demo" / "longest-8" / "compare" / "compare.json").read_text())
    assert [c["name"] for c in saved["controls"]] == ["random seed 0", "random seed 1"]
    means = {name: p["tokens"]["mean"] for name, p in saved["proxies"].items()}
    assert saved["evals"][0]["rows"] == 8 and means["selection"] > max(means["random seed 0"], means["random seed 1"])
    assert example.main(argv) == 2  # the output exists
    assert example.main([*argv, "--overwrite"]) == 0
    assert "| yes |" in capsys.readouterr().out  # the re-run reused the cached runs


def test_lora_run_changes_only_the_attention_projections(tiny_model: str, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from hf_select.compare.train import run_fingerprint, train_run

    subset = Dataset.from_list(rows("a", 0, 16))
    lora = TrainSettings(model=tiny_model, epochs=1, learning_rate=1e-2, max_length=96, lora_r=4)
    run = train_run(subset, lora, 0, tmp_path / "run")
    assert not hasattr(run.model, "peft_config")  # merged: a plain model, saved and reloaded as one
    base = AutoModelForCausalLM.from_pretrained(tiny_model).state_dict()
    tuned = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "model").state_dict()
    assert tuned.keys() == base.keys()
    changed = {k for k in base if not torch.equal(base[k], tuned[k])}
    assert changed and all(any(t in k for t in ("q_proj", "k_proj", "v_proj", "o_proj")) for k in changed)
    full = TrainSettings(model=tiny_model, epochs=1, learning_rate=1e-2, max_length=96)
    assert run_fingerprint(lora, 0, "x") != run_fingerprint(full, 0, "x")


def test_trl_training_is_deterministic_and_trains_on_the_responses_only(tiny_model: str, tmp_path: Path) -> None:
    import torch

    from hf_select.compare.sft import trl_dataset
    from hf_select.compare.train import train_run
    from hf_select.select.diverse_evol import sft_examples
    from hf_select.tokenizer import load_tokenizer

    subset = Dataset.from_list(rows("a", 0, 12))
    one = TrainSettings(model=tiny_model, epochs=1, learning_rate=1e-2, max_length=96, batch_size=4)
    first, second = (train_run(subset, one, 3, tmp_path / name) for name in ("r1", "r2"))
    other = train_run(subset, one, 4, tmp_path / "r3")  # another seed: another data order
    a, b, c = (r.model.state_dict() for r in (first, second, other))
    assert all(torch.equal(a[k], b[k]) for k in a) and not all(torch.equal(a[k], c[k]) for k in a)
    assert first.info["metrics"]["train_loss"] == second.info["metrics"]["train_loss"]
    # what TRL is given: the project's encoding, the completion mask exactly where sft_examples has labels
    examples, _ = sft_examples(subset, load_tokenizer(tiny_model), max_length=96)
    data = trl_dataset(examples)
    for example, mask in zip(examples, data["completion_mask"], strict=True):
        assert mask == [int(label != -100) for label in example["labels"]] and 0 < sum(mask) < len(mask)


def test_exact_match_eval_scores_what_the_model_generates(tiny_model: str, tmp_path: Path) -> None:
    def qa(question: str, answer: str) -> dict:
        return {"conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]}

    selection = Dataset.from_list([qa(f"Name a city number {i}.", "Paris") for i in range(16)])
    control = Dataset.from_list(rows("b", 0, 16))
    questions = tmp_path / "qa.jsonl"
    questions.write_text(
        "".join(json.dumps({"prompt": f"Name a city number {i}.", "answer": "paris"}) + "\n" for i in (50, 51))
    )
    trained = TrainSettings(model=tiny_model, epochs=8, learning_rate=5e-3, max_length=64, warmup=0.0)
    result = compare(
        selection,
        [control],
        settings=trained,
        evals=[f"exact:{questions}"],
        cache_dir=tmp_path / "c",
        log=lambda _: None,
    )
    (c,) = result.comparisons
    assert c.metric == "exact:qa.jsonl/exact_match" and c.higher_is_better
    assert c.selection == [1.0] and c.controls == [0.0]  # learnt to answer "Paris"; the poems did not teach it
    with pytest.raises(InputError, match="needs string fields 'prompt' and 'answer'"):
        bad = tmp_path / "bad.jsonl"
        bad.write_text('{"prompt": "x"}\n')
        compare(selection, [control], settings=trained, evals=[f"exact:{bad}"], cache_dir=tmp_path / "c")


# ---------------------------------------------------------------------------------------------------
# the card's "Against random" section, from a hand-written compare.json (no training)
# ---------------------------------------------------------------------------------------------------


def _comparison(metric: str, selection: list[float], controls: list[float], higher: bool) -> dict:
    return compare_scores(metric, selection, controls, higher_is_better=higher).to_dict()


def _selection_folder(tmp_path: Path) -> Path:
    pool = Dataset.from_dict({"n_tokens": [float(n) for n in range(10, 50)], "text": [f"r{i}" for i in range(40)]})
    sel = select.top_k(pool, "n_tokens", 8, source={"dataset": "pool.jsonl"})
    return save_selection(sel.dataset, tmp_path / "longest-8", sel.record, pool=pool)


def _write_compare(folder: Path, comparisons: list[dict], *, plots: bool = True, dry_run: bool = False) -> None:
    out = folder / "compare"
    (out / "assets").mkdir(parents=True, exist_ok=True)
    record = {
        "selection": {"name": "selection", "path": str(folder), "rows": 8, "sha256": "x"},
        "controls": [{"name": f"random seed {i}"} for i in range(5)],
        "settings": {"model": "embedded:smollm2"},
        "seeds": [0],
        "comparisons": comparisons,
        "dry_run": dry_run,
    }
    (out / "compare.json").write_text(json.dumps(record))
    if plots:
        for c in comparisons:
            (out / "assets" / plot_file(c["metric"])).write_bytes(b"\x89PNG not really")


def test_card_gains_the_against_random_section_from_compare_json(tmp_path: Path) -> None:
    folder = _selection_folder(tmp_path)
    before = (folder / "README.md").read_text()
    loss = _comparison("heldout/loss", [1.5], [2.0, 2.1, 2.2, 2.3, 2.4], higher=False)
    match = _comparison("exact|qa_*", [0.4], [0.3, 0.5, 0.35, 0.2, 0.45], higher=True)
    _write_compare(folder, [loss, match])
    assert refresh_readme(folder) == folder / "README.md"
    card = (folder / "README.md").read_text()
    section = card[card.index("## Against random: fine-tuned models") : card.index("## Reproduce it")]
    # the numbers: selection score, controls' mean ± sd (sample sd), one-sided p, verdict; escaped metric names
    assert "| heldout/loss | 1.5 | 2.2 ± 0.1581 | 0.1667 |" in section
    assert "| exact\\|qa\\_\\* | 0.4 | 0.36 ± 0.1194 | 0.5 |" in section
    assert f"- {loss['verdict']}" in section and "no p below 0.167 is possible" in section
    assert "- exact\\|qa\\_\\*: not distinguishable from random (p = 0.5" in section
    assert "5 random controls" in section and "`embedded:smollm2`" in section
    assert "](compare/assets/compare-heldout-loss.png)" in section
    assert "](compare/assets/compare-exact-qa--.png)" in section
    # everything else is the card as it was
    assert card.replace(section, "") == before
    # saving the selection again keeps the section; removing the comparison (or a dry run) removes it
    sel = select.top_k(load_selection_folder(folder), "n_tokens", 8)
    save_selection(sel.dataset, folder, sel.record)
    assert "## Against random: fine-tuned models" in (folder / "README.md").read_text()
    _write_compare(folder, [], dry_run=True)
    refresh_readme(folder)
    assert "## Against random" not in (folder / "README.md").read_text()


def test_push_plan_shows_the_section_and_uploads_the_plots(tmp_path: Path) -> None:
    folder = _selection_folder(tmp_path)
    plain, plain_files = plan_folder(folder, "me/longest")
    loss = _comparison("heldout/loss", [1.5], [2.0, 2.1, 2.2, 2.3, 2.4], higher=False)
    _write_compare(folder, [loss])
    # README.md is still the one without the section: push re-renders from card.json and reads compare.json
    assert "## Against random: fine-tuned models" not in (folder / "README.md").read_text()
    readme, files = plan_folder(folder, "me/longest")
    assert "## Against random: fine-tuned models" in readme and "| heldout/loss | 1.5 | 2.2 ± 0.1581 |" in readme
    assert "load_dataset('me/longest'" in readme
    paths = [p for p, _ in files]
    assert "compare/compare.json" in paths and "compare/assets/compare-heldout-loss.png" in paths
    assert "card.json" not in paths
    # without compare.json: the plan is the one from before, byte for byte
    (folder / "compare" / "compare.json").unlink()
    (folder / "compare" / "assets" / "compare-heldout-loss.png").unlink()
    assert plan_folder(folder, "me/longest") == (plain, plain_files)
    # a plot that is missing is not linked; a broken compare.json is a clear error naming it
    _write_compare(folder, [loss], plots=False)
    assert "compare-heldout-loss.png" not in plan_folder(folder, "me/longest")[0]
    (folder / "compare" / "compare.json").write_text(json.dumps({"comparisons": [{"metric": "x"}]}))
    with pytest.raises(InputError, match="compare.json"):
        plan_folder(folder, "me/longest")
