"""Throughput of `ds.map(TokenLengthScorer(...), batched=True)` on the full embedded ShareGPT pool.

Compared, in the same process and on the same rendered texts, with:
  (a) the limit: one batched call of the fast tokenizer (the Rust backend's `encode_batch_fast`) on
      every prompt and response text, already rendered;
  (b) a per-row loop: one tokenizer call per row, as the study's code counts.
Floors (issue 2): the scorer reaches at least 0.7 of the limit, and `num_proc=2` is faster than 1.

    python benchmarks/bench_token_length.py [--rows N] [--per-row-rows N]
"""

from __future__ import annotations

import argparse
import time

from common import write_results

from hf_select import embedded
from hf_select.conversation import RowError, batch_turns, detect_format, split_last
from hf_select.encoding import ConversationEncoder
from hf_select.pool import load_pool
from hf_select.scorers import TokenLengthScorer
from hf_select.tokenizer import load_tokenizer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, help="use the first N rows (default: the whole pool)")
    parser.add_argument("--per-row-rows", type=int, help="time the per-row loop on the first N rows only")
    args = parser.parse_args()

    pool, _, _ = load_pool(embedded.SHAREGPT)
    if args.rows:
        pool = pool.select(range(args.rows))
    tokenizer_path = str(embedded.smollm2_path())
    encoder = ConversationEncoder(load_tokenizer(tokenizer_path), "auto")
    spec = detect_format(pool.column_names)

    t0 = time.perf_counter()
    pairs = []
    for turns in batch_turns(pool.select_columns(list(spec.columns))[:], spec):
        if isinstance(turns, RowError):
            continue
        try:
            pairs.append(encoder.render(*split_last(turns)))
        except RowError:
            continue
    render_s = time.perf_counter() - t0
    texts = [p for p, _ in pairs] + [r for _, r in pairs]
    backend = encoder.tokenizer.backend_tokenizer

    def limit() -> tuple[float, int]:
        t = time.perf_counter()
        n = sum(len(e) for e in backend.encode_batch_fast(texts, add_special_tokens=False))
        return time.perf_counter() - t, n

    def scorer_run(num_proc: int | None) -> tuple[float, int]:
        scorer = TokenLengthScorer(tokenizer=tokenizer_path)
        t = time.perf_counter()
        out = pool.map(scorer, batched=True, num_proc=num_proc, load_from_cache_file=False)
        elapsed = time.perf_counter() - t
        return elapsed, int(sum(x for x in out["n_tokens"] if x == x))

    # Order matters: once this process has encoded with the Rust thread pool, `tokenizers` disables that
    # pool in forked children. So the forked num_proc=2 run comes first, while the parent has only
    # loaded the tokenizer (TokenLengthScorer.preload: the workers inherit it instead of reloading).
    TokenLengthScorer(tokenizer=tokenizer_path).preload()
    two_s, _ = scorer_run(2)
    one_s, scorer_tokens = scorer_run(None)
    limit_s, n_tokens = limit()
    two_again_s, _ = scorer_run(2)  # after the parent encoded: each worker tokenizes on one thread
    one_again_s, _ = scorer_run(None)
    limit_again_s, _ = limit()
    # num_proc 2 vs 1: the first runs, both with a cold tokenizer cache and full parallelism.
    # Scorer vs limit: the best warm num_proc=1 run against the best limit run.
    best_one_s, limit_s = min(one_s, one_again_s), min(limit_s, limit_again_s)

    per_row_texts = pairs[: args.per_row_rows] if args.per_row_rows else pairs
    t = time.perf_counter()
    tok = encoder.tokenizer
    per_row_tokens = 0
    for prompt, response in per_row_texts:
        per_row_tokens += len(tok(prompt, add_special_tokens=False)["input_ids"])
        per_row_tokens += len(tok(response, add_special_tokens=False)["input_ids"])
    per_row_s = time.perf_counter() - t
    per_row_rate = per_row_tokens / per_row_s

    rows = len(pool)

    def rate(seconds: float) -> dict[str, float]:
        return {
            "seconds": round(seconds, 2),
            "rows_per_s": round(rows / seconds),
            "tokens_per_s": round(n_tokens / seconds),
        }

    figures = {
        "pool_rows": rows,
        "rendered_rows": len(pairs),
        "tokens": n_tokens,
        "scorer_tokens_counted": scorer_tokens,
        "render_s": round(render_s, 2),
        "limit": rate(limit_s),
        "scorer_num_proc_1": rate(one_s),
        "scorer_num_proc_2": rate(two_s),
        "scorer_num_proc_2_after_parent_encoded": rate(two_again_s),
        "per_row_loop": {
            "rows": len(per_row_texts),
            "seconds": round(per_row_s, 2),
            "tokens_per_s": round(per_row_rate),
        },
        "scorer_num_proc_1_best": rate(best_one_s),
        "ratio_scorer_1_to_limit": round(limit_s / best_one_s, 3),
        "ratio_scorer_2_to_limit": round(limit_s / two_s, 3),
        "speedup_num_proc_2_over_1": round(one_s / two_s, 3),
        "speedup_scorer_2_over_per_row": round((n_tokens / two_s) / per_row_rate, 2),
    }
    assert scorer_tokens == n_tokens + len(pairs) * len(encoder.prefix_ids), "scorer and limit counted different tokens"

    def line(name: str, seconds: float, n_rows: int, tokens: int) -> str:
        vs_limit = (tokens / seconds) / (n_tokens / limit_s)
        return f"| {name} | {seconds:.1f} | {n_rows / seconds:,.0f} | {tokens / seconds:,.0f} | {vs_limit:.2f} |"

    md = "\n".join(
        [
            f"Token-length scorer on {rows:,} ShareGPT rows ({n_tokens:,} tokens), SmolLM2 tokenizer, chat template.",
            "",
            "| run | seconds | rows/s | tokens/s | vs limit |",
            "|---|---:|---:|---:|---:|",
            line("(a) limit: one `encode_batch_fast` call", limit_s, rows, n_tokens),
            line("scorer, `num_proc=1`, first run", one_s, rows, n_tokens),
            line("scorer, `num_proc=2`, first run", two_s, rows, n_tokens),
            line("scorer, `num_proc=1`, best (warm)", best_one_s, rows, n_tokens),
            line("scorer, `num_proc=2`, after the parent encoded", two_again_s, rows, n_tokens),
            line(f"(b) per-row loop ({len(per_row_texts):,} rows)", per_row_s, len(per_row_texts), per_row_tokens),
        ]
    )
    print(md)
    print(
        f"\nnum_proc=2 over num_proc=1: {one_s / two_s:.2f}x; scorer (num_proc=2) over per-row loop: "
        f"{(n_tokens / two_s) / per_row_rate:.1f}x"
    )
    print(f"wrote {write_results('token_length', figures, md)}")


if __name__ == "__main__":
    main()
