"""Tokens/s of the IFD and CE scorers against one-row-per-forward implementations.

Two baselines, both one forward pass per row (two for IFD) with full logits over every position, on the
very same token sequences as the scorer (its own encoding), each checked to agree with it:
- **naive**: a clean per-row loop (one vectorised log-softmax over the logits, the response positions'
  NLL gathered at once);
- **study code**: the work the study's scripts do per row: the forward with `labels=` and
  `output_hidden_states=True`; for IFD each pass then takes every position's log-softmax and NLL in a
  Python loop (Cherry LLM's `data_analysis.py --mod cherry`), for CE a second, unshifted cross-entropy
  over the logits (the study's `entropy_response.py`; its value is the study's bug, so the check uses the
  shifted `outputs.loss` it also computes).

    python benchmarks/bench_lm_scoring.py --model tiny --rows 2000            # CPU floor: 5x naive
    python benchmarks/bench_lm_scoring.py --model embedded:smollm2 --rows 64 --max-length 512
    python benchmarks/bench_lm_scoring.py --model qwen2-0.5b-random --rows 2000  # on a GPU: MFU, memory

A GPU machine without the embedded packages takes the first rows and the tokenizer as files:
`hf_select.pool.load_pool(embedded.SHAREGPT).dataset.select(range(2000)).to_parquet("bench/pool.parquet")`
and `load_tokenizer(embedded.SMOLLM2).save_pretrained("bench/tok")`, then `--pool bench/pool.parquet
--tokenizer bench/tok`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import write_results

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from hf_select import embedded  # noqa: E402
from hf_select.encoding import assistant_header  # noqa: E402
from hf_select.pool import load_pool  # noqa: E402
from hf_select.scorers import CrossEntropyScorer, IFDScorer  # noqa: E402

PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense bf16 FLOP/s


def build_model(name: str, workdir: Path, tokenizer_name: str) -> str:
    if name == "tiny":
        from tiny_model import build_tiny_model, build_tiny_tokenizer

        tok = build_tiny_tokenizer(workdir / "tok")
        return build_tiny_model(workdir / "model", tok)
    if name.endswith("-random"):  # a real architecture with random weights: speed does not depend on weights
        from transformers import AutoConfig, AutoModelForCausalLM, Qwen2Config

        from hf_select.tokenizer import load_tokenizer

        tokenizer = load_tokenizer(tokenizer_name)
        config = Qwen2Config(
            vocab_size=151_936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
            num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768, tie_word_embeddings=True,
        )  # fmt: skip
        assert name == "qwen2-0.5b-random", name
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**config.to_dict()))
        model.save_pretrained(workdir / "model")
        tokenizer.save_pretrained(workdir / "model")
        return str(workdir / "model")
    return name


def naive_nll(model: torch.nn.Module, ids: list[int], spans: list[tuple[int, int]], device: str) -> tuple[float, int]:
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids], device=device)).logits[0].float()
        logp = torch.log_softmax(logits, dim=-1)
    total, count = 0.0, 0
    for start, end in spans:
        targets = torch.tensor(ids[start:end], device=device)
        total -= logp[start - 1 : end - 1].gather(-1, targets[:, None]).sum().item()
        count += end - start
    return total, count


def study_ifd_pass(model: torch.nn.Module, ids: list[int], start: int, device: str) -> float:
    """Mean response NLL from one pass done the study's way (see the module docstring)."""
    x = torch.tensor([ids], device=device)
    labels = x.clone()
    labels[0, :start] = -100
    with torch.no_grad():
        out = model(x, labels=labels, output_hidden_states=True)
    log_softmax, nll = torch.nn.LogSoftmax(dim=-1), torch.nn.NLLLoss(reduction="none")
    losses = [nll(log_softmax(out.logits[0, i - 1])[None], x[0, i][None]).item() for i in range(1, len(ids))]
    return float(np.mean(losses[start - 1 :]))


def study_ce_row(model: torch.nn.Module, ids: list[int], start: int, device: str) -> float:
    """The shifted CE of one row, computed with the study's per-row work (see the module docstring)."""
    x = torch.tensor([ids], device=device)
    labels = x[0].clone()
    labels[:start] = -100
    with torch.no_grad():
        out = model(x, labels=labels[None], output_hidden_states=True)
        torch.nn.functional.cross_entropy(out.logits[0], labels, ignore_index=-100).item()  # the study's value
    return out.loss.item()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--pool", default=embedded.SHAREGPT, help="the rows to score (default: the embedded ShareGPT)")
    parser.add_argument("--tokenizer", default=embedded.SMOLLM2, help="the *-random models' tokenizer")
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--batch-tokens", type=int, help="default: the engine's (32768 on GPU, 4096 on CPU)")
    parser.add_argument("--naive-rows", type=int, help="time the naive loop on the first N rows only")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    workdir = Path(tempfile.mkdtemp())
    model_path = build_model(args.model, workdir, args.tokenizer)

    pool, _, _ = load_pool(args.pool)
    pool = pool.select(range(args.rows))
    common = {"model": model_path, "max_length": args.max_length, "batch_tokens": args.batch_tokens}
    ce_scorer, ifd_scorer = CrossEntropyScorer(**common), IFDScorer(**common)
    resources = ce_scorer.resources(0 if device == "cuda" else None)
    engine = resources.engine
    batch_tokens = args.batch_tokens or engine.batch_tokens
    kept, units, _ = ce_scorer.units(pool[:], resources)
    header = assistant_header(resources.encoder)
    seq_tokens = sum(len(ids) for ids, _ in units)
    target_tokens = sum(e - s for _, spans in units for s, e in spans)
    n_params = engine.n_parameters

    def timed(fn):  # noqa: ANN001, ANN202
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        out = fn()
        if device == "cuda":
            torch.cuda.synchronize()
        return out, time.perf_counter() - t

    ce_out, ce_s = timed(lambda: pool.map(ce_scorer, batched=True, batch_size=1000, load_from_cache_file=False))
    peak_gb = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    ifd_out, ifd_s = timed(lambda: pool.map(ifd_scorer, batched=True, batch_size=1000, load_from_cache_file=False))

    naive_n = min(args.naive_rows or len(units), len(units))
    model = engine.model
    # The engine alone on the same token sequences as the naive loop (no tokenisation on either side).
    _, engine_ce_s = timed(lambda: engine.nll(units[:naive_n], batch_tokens=batch_tokens))
    first = units[:naive_n]
    first_direct = [(header + ids[s:e], [(len(header), len(header) + e - s)]) for ids, spans in first for s, e in spans]
    _, engine_ifd_s = timed(lambda: engine.nll(first + first_direct, batch_tokens=batch_tokens))

    def naive_ce() -> list[float]:
        return [s / c for s, c in (naive_nll(model, ids, spans, engine.device) for ids, spans in units[:naive_n])]

    def naive_ifd() -> list[float]:
        out = []
        for ids, spans in units[:naive_n]:
            cond_sum, count = naive_nll(model, ids, spans, engine.device)
            direct_sum = 0.0
            for start, end in spans:
                span = [(len(header), len(header) + end - start)]
                d, _ = naive_nll(model, header + ids[start:end], span, engine.device)
                direct_sum += d
            out.append(cond_sum / direct_sum)
        return out

    def study_ce() -> list[float]:
        return [study_ce_row(model, list(ids), spans[0][0], engine.device) for ids, spans in units[:naive_n]]

    def study_ifd() -> list[float]:
        out = []
        for ids, spans in units[:naive_n]:
            ((start, end),) = spans
            cond = study_ifd_pass(model, list(ids), start, engine.device)
            direct = study_ifd_pass(model, header + list(ids[start:end]), len(header), engine.device)
            out.append(cond / direct)
        return out

    naive_ce_vals, naive_ce_s = timed(naive_ce)
    naive_ifd_vals, naive_ifd_s = timed(naive_ifd)
    study_ce_vals, study_ce_s = timed(study_ce)
    study_ifd_vals, study_ifd_s = timed(study_ifd)
    ce_vals = np.array(ce_out["ce"])[kept][:naive_n]
    ifd_vals = np.array(ifd_out["ifd"])[kept][:naive_n]
    # float32 must agree to rounding; in bf16 a batch and a single row round differently (kept, not asserted
    # until the figures are written, so that a long GPU run is never lost to it).
    tolerance = 1e-4 if engine.dtype == torch.float32 else 5e-2
    ce_diff = float(np.max(np.abs(ce_vals - naive_ce_vals)))
    ifd_diff = float(np.max(np.abs(ifd_vals - naive_ifd_vals)))
    study_diff = max(np.max(np.abs(ce_vals - study_ce_vals)), np.max(np.abs(ifd_vals - study_ifd_vals)))

    naive_tokens = sum(len(ids) for ids, _ in units[:naive_n])
    naive_ifd_tokens = naive_tokens + sum(len(header) + e - s for _, spans in units[:naive_n] for s, e in spans)
    ifd_tokens = seq_tokens + sum(len(header) + e - s for _, spans in units for s, e in spans)
    rates = {
        "engine_ce_tokens_per_s": naive_tokens / engine_ce_s,
        "engine_ifd_tokens_per_s": naive_ifd_tokens / engine_ifd_s,
        "ce_tokens_per_s": seq_tokens / ce_s,
        "ifd_tokens_per_s": ifd_tokens / ifd_s,
        "naive_ce_tokens_per_s": naive_tokens / naive_ce_s,
        "naive_ifd_tokens_per_s": naive_ifd_tokens / naive_ifd_s,
        "study_ce_tokens_per_s": naive_tokens / study_ce_s,
        "study_ifd_tokens_per_s": naive_ifd_tokens / study_ifd_s,
    }
    figures = {
        "model": args.model,
        "parameters": n_params,
        "device": device,
        "dtype": str(engine.dtype),
        "rows": args.rows,
        "scored_rows": len(units),
        "max_length": args.max_length,
        "batch_tokens": batch_tokens,
        "sequence_tokens": seq_tokens,
        "target_tokens": target_tokens,
        "naive_rows": naive_n,
        **{k: round(v, 1) for k, v in rates.items()},
        "engine_ce_speedup_over_naive": round(rates["engine_ce_tokens_per_s"] / rates["naive_ce_tokens_per_s"], 2),
        "engine_ifd_speedup_over_naive": round(rates["engine_ifd_tokens_per_s"] / rates["naive_ifd_tokens_per_s"], 2),
        "ce_speedup_over_naive": round(rates["ce_tokens_per_s"] / rates["naive_ce_tokens_per_s"], 2),
        "ifd_speedup_over_naive": round(rates["ifd_tokens_per_s"] / rates["naive_ifd_tokens_per_s"], 2),
        "engine_ce_speedup_over_study": round(rates["engine_ce_tokens_per_s"] / rates["study_ce_tokens_per_s"], 2),
        "engine_ifd_speedup_over_study": round(rates["engine_ifd_tokens_per_s"] / rates["study_ifd_tokens_per_s"], 2),
        "ce_speedup_over_study": round(rates["ce_tokens_per_s"] / rates["study_ce_tokens_per_s"], 2),
        "ifd_speedup_over_study": round(rates["ifd_tokens_per_s"] / rates["study_ifd_tokens_per_s"], 2),
        "max_abs_diff_ce": ce_diff,
        "max_abs_diff_ifd": ifd_diff,
        "max_abs_diff_study": float(study_diff),
    }
    if device == "cuda":
        name = torch.cuda.get_device_name(0)
        peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
        figures["gpu"] = name
        figures["peak_memory_gib_ce"] = round(peak_gb, 2)
        if peak:
            for m in ("ce", "ifd"):  # 2 x parameters x tokens / time / peak bf16 FLOP/s, as the issue defines it
                figures[f"mfu_{m}"] = round(2 * n_params * rates[f"{m}_tokens_per_s"] / peak, 3)
                figures[f"mfu_engine_{m}"] = round(2 * n_params * rates[f"engine_{m}_tokens_per_s"] / peak, 3)
    lines = [
        f"{args.model} ({n_params:,} parameters, {engine.dtype}) on {device}: {len(units):,} ShareGPT rows "
        f"({seq_tokens:,} tokens, max_length {args.max_length}, batch_tokens {batch_tokens:,}); the baselines "
        f"measured on {naive_n:,} rows.",
        "",
        "Engine: the same token sequences as the baselines, no tokenisation on any side. End to end:",
        "`ds.map(scorer)` over every row (rendering, tokenising, rows rejected as too long) against the",
        "baselines' forward passes alone. Naive: a clean per-row loop. Study code: the study's per-row work.",
        "",
        "| method | engine | end to end | naive | study code | engine vs naive | engine vs study code "
        "| end to end vs naive | end to end vs study code |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in ("ce", "ifd"):
        rate = [rates[f"{k}{m}_tokens_per_s"] for k in ("engine_", "", "naive_", "study_")]
        ratio = [figures[f"{k}{m}_speedup_over_{b}"] for k in ("engine_", "") for b in ("naive", "study")]
        lines.append(
            f"| {m.upper()} | " + " | ".join(f"{r:,.0f}" for r in rate) + " | " + "x | ".join(map(str, ratio)) + "x |"
        )
    lines += [
        "",
        "(tokens/s; IFD counts both passes' tokens.)",
        f"Max |hf-select - naive|: CE {ce_diff:.2e}, IFD {ifd_diff:.2e}; |hf-select - study code| {study_diff:.2e}.",
    ]
    if "mfu_ce" in figures:
        lines.append(
            f"MFU end to end: CE {figures['mfu_ce']:.1%}, IFD {figures['mfu_ifd']:.1%}; engine: CE "
            f"{figures['mfu_engine_ce']:.1%}, IFD {figures['mfu_engine_ifd']:.1%}; peak memory {peak_gb:.1f} GiB."
        )
    md = "\n".join(lines)
    print(md)
    safe = args.model.replace("/", "_").replace(":", "_")
    print(f"wrote {write_results(f'lm_scoring_{safe}_{device}_{args.max_length}', figures, md)}")
    assert max(ce_diff, ifd_diff, study_diff) < tolerance, (ce_diff, ifd_diff, study_diff)


if __name__ == "__main__":
    main()
