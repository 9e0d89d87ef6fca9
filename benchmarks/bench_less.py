"""LESS scoring: hf-select's batched exact scorer against the reference's way, on the same rows in one run.

- **ours**: target means once (`hf_select.less.targets.target_means`), then every pool row's LoRA gradient in
  length-sorted micro-batches (one forward + one backward per micro-batch, per-row gradients by einsum),
  Adam-preconditioned, one dot product per checkpoint (`projection="none"`): nothing written to disk.
- **reference's way** (princeton-nlp/LESS `collect_grad_reps.py` + `matching.py`): one forward/backward per
  row (`model(input_ids, labels=...).loss`, response tokens only) reading the LoRA weights' `.grad`, Adam
  preconditioning for pool rows, a Rademacher projection to `--proj-dim` every 16 rows (its
  `project_interval`; a dense matrix made once, outside the timing, when it fits in 1 GiB, else generated
  block by block as trak's CUDA projector does), the projected vectors written to disk per checkpoint, then
  loaded, normalised and matched (mean cosine over targets, learning-rate-weighted sum over checkpoints).

Both start from the same warm-up folder (random LoRA weights and Adam moments, `tests/less_warmup.py`) and
the same token rows (random ids, mixed lengths, the last third of each row is the response). The bench checks
that both compute the same per-row gradients, and prints per-row gradient throughput, end-to-end rows/s,
bytes written and peak memory.

    python benchmarks/bench_less.py                                        # CPU, tiny Llama: floor 3x
    python benchmarks/bench_less.py --seed-noise --rank 64 --rows 600      # top-k overlap of two seeds
    python benchmarks/bench_less.py --model llama-1b-random --dtype bf16 --rank 128 --rows 128 --checkpoints 2

The last is for a GPU (floor 10x). There the reference's projection of 27M LoRA weights is generated block by
block (`hf_select.less.projection`), slower than trak's fused CUDA kernel: the per-row gradient ratio (no
projection on either side) is the conservative figure.

Needs torch, transformers and peft only (no `datasets`: the GPU machines lack it).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import write_results

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from less_warmup import build_warmup  # noqa: E402

from hf_select.less.model import WarmupModel  # noqa: E402
from hf_select.less.projection import RademacherProjection  # noqa: E402
from hf_select.less.score import pool_scores  # noqa: E402
from hf_select.less.targets import target_means  # noqa: E402


def build_model(name: str, workdir: Path, dtype: torch.dtype) -> tuple[str, int]:
    """A saved model folder and its vocabulary size."""
    if name == "tiny":
        from tiny_model import build_tiny_model, build_tiny_tokenizer

        path = build_tiny_model(workdir / "model", build_tiny_tokenizer(workdir / "tok"))
        from transformers import AutoConfig

        return path, AutoConfig.from_pretrained(path).vocab_size
    if name == "llama-1b-random":  # Llama-3.2-1B's shape, random weights: speed does not depend on them
        from transformers import LlamaConfig, LlamaForCausalLM

        config = LlamaConfig(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                             num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=8192,
                             rope_theta=500000.0, tie_word_embeddings=True)  # fmt: skip
        torch.manual_seed(0)
        model = LlamaForCausalLM(config).to(dtype)
        model.save_pretrained(workdir / "model")
        return str(workdir / "model"), config.vocab_size
    raise SystemExit(f"unknown --model {name!r}: tiny or llama-1b-random")


def make_rows(n: int, vocab: int, lo: int, hi: int, seed: int) -> list[tuple[list[int], list[tuple[int, int]]]]:
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        length = int(rng.integers(lo, hi + 1))
        ids = rng.integers(5, vocab, size=length).tolist()
        start = max(1, length - max(1, length // 3))
        rows.append((ids, [(start, length)]))
    return rows


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def reference_vectors(lm: WarmupModel, rows: list, checkpoint: int, adam: bool, projection, out: Path) -> int:
    """The reference's collection for one checkpoint: one backward per row, projected every 16 rows, saved;
    returns bytes written."""
    lm.use(checkpoint)
    model, names = lm.model, lm.gradients.names
    params = dict(model.named_parameters())
    m, v = lm.adam[checkpoint]
    pending, projected = [], []
    for ids, spans in rows:
        model.zero_grad(set_to_none=True)
        input_ids = torch.tensor([ids], device=lm.device)
        labels = torch.full_like(input_ids, -100)
        for s, e in spans:
            labels[0, s:e] = input_ids[0, s:e]
        model(input_ids=input_ids, labels=labels).loss.backward()
        g = torch.cat([params[n].grad.reshape(-1).float() for n in names])
        if adam:
            g = (0.9 * m + 0.1 * g) / torch.sqrt(0.999 * v + 0.001 * g * g + 1e-8)
        pending.append(g)
        if len(pending) == 16:
            projected.append(projection(torch.stack(pending)))
            pending = []
    if pending:
        projected.append(projection(torch.stack(pending)))
    vectors = torch.cat(projected).half().cpu()
    path = out / f"{'pool' if adam else 'targets'}-{checkpoint}.pt"
    torch.save(vectors, path)
    return path.stat().st_size


def reference_scores(lm: WarmupModel, pool: list, targets: list, projection, out: Path) -> tuple[np.ndarray, int]:
    written = 0
    for i in range(len(lm.weights)):
        written += reference_vectors(lm, targets, i, False, projection, out)
        written += reference_vectors(lm, pool, i, True, projection, out)
    scores = np.zeros(len(pool))
    for i, w in enumerate(lm.weights):  # matching.py: normalise, cosine matrix, mean over targets
        p = torch.nn.functional.normalize(torch.load(out / f"pool-{i}.pt").float(), dim=1)
        t = torch.nn.functional.normalize(torch.load(out / f"targets-{i}.pt").float(), dim=1)
        scores += w * (p @ t.T).mean(dim=1).double().numpy()
    return scores, written


def peak_memory(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB (lifetime peak)


def top_k_overlap(a: np.ndarray, b: np.ndarray, fraction: float) -> float:
    k = max(1, int(round(fraction * len(a))))
    return len(set(np.argsort(-a)[:k]) & set(np.argsort(-b)[:k])) / k


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bf16"])
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--targets", type=int, default=32)
    parser.add_argument("--checkpoints", type=int, default=4)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--min-length", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=160)
    parser.add_argument("--proj-dim", type=int, default=8192)
    parser.add_argument("--batch-tokens", type=int, default=None)
    parser.add_argument("--seed-noise", action="store_true", help="top-k overlap of two projection seeds instead")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    batch_tokens = args.batch_tokens or (16384 if device == "cuda" else 4096)
    workdir = Path(tempfile.mkdtemp(prefix="bench-less-"))
    model_path, vocab = build_model(args.model, workdir, dtype)
    rates = [2e-5 * (1 - e / args.checkpoints) + 1e-6 for e in range(args.checkpoints)]
    build_warmup(workdir / "warmup", model_path, epochs=args.checkpoints, r=args.rank, learning_rates=rates)
    lm = WarmupModel(workdir / "warmup", device=device, dtype="bfloat16" if args.dtype == "bf16" else "float32")
    pool = make_rows(args.rows, vocab, args.min_length, args.max_length, seed=1)
    targets = make_rows(args.targets, vocab, args.min_length, args.max_length, seed=2)
    tokens = sum(len(ids) for ids, _ in pool)
    print(
        f"{args.model} on {device} ({args.dtype}): LoRA r={args.rank}, {lm.gradients.dim:,} LoRA weights, "
        f"{args.checkpoints} checkpoints, {args.rows} pool rows ({tokens:,} tokens), {args.targets} targets"
    )
    if args.seed_noise:
        return seed_noise(args, lm, pool, targets, batch_tokens, device)

    # per-row gradient throughput, one checkpoint, the same rows
    sync(device)
    t0 = time.perf_counter()
    ours_grads = [vectors for _, vectors in lm.vectors(pool, checkpoint=0, adam=False, batch_tokens=batch_tokens)]
    sync(device)
    ours_grad_s = time.perf_counter() - t0
    del ours_grads
    check = 8
    batched = lm.gradients.per_row(pool[:check])
    params = dict(lm.model.named_parameters())
    t0 = time.perf_counter()
    errors = []
    for r, (ids, spans) in enumerate(pool):
        lm.model.zero_grad(set_to_none=True)
        input_ids = torch.tensor([ids], device=device)
        labels = torch.full_like(input_ids, -100)
        labels[0, spans[0][0] : spans[0][1]] = input_ids[0, spans[0][0] : spans[0][1]]
        lm.model(input_ids=input_ids, labels=labels).loss.backward()
        g = torch.cat([params[n].grad.reshape(-1).float() for n in lm.gradients.names])
        if r < check:
            errors.append(float((g - batched[r]).norm() / g.norm()))
    sync(device)
    ref_grad_s = time.perf_counter() - t0
    print(f"per-row gradients: ours {args.rows / ours_grad_s:,.1f} rows/s, one backward per row "
          f"{args.rows / ref_grad_s:,.1f} rows/s ({ref_grad_s / ours_grad_s:.1f}x); max relative difference "
          f"of the first {check} rows' gradients {max(errors):.2e}")  # fmt: skip

    # end to end
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync(device)
    t0 = time.perf_counter()
    means = target_means(lm, [targets], batch_tokens=batch_tokens)
    ours = pool_scores(lm, means.to(device), pool, batch_tokens=batch_tokens)
    sync(device)
    ours_s = time.perf_counter() - t0
    ours_peak = peak_memory(device)
    projection = RademacherProjection(lm.gradients.dim, args.proj_dim, seed=0)
    if lm.gradients.dim * args.proj_dim <= 2**28:  # a dense matrix (<= 1 GiB), made once, outside the timing
        dense = projection.dense(device)
        projection = lambda x: x @ dense  # noqa: E731
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    ref, written = reference_scores(lm, pool, targets, projection, workdir)
    sync(device)
    ref_s = time.perf_counter() - t0
    ref_peak = peak_memory(device)
    rho = float(np.corrcoef(np.argsort(np.argsort(ours)), np.argsort(np.argsort(ref)))[0, 1])
    speedup = ref_s / ours_s
    print(f"end to end: ours {args.rows / ours_s:,.1f} rows/s ({ours_s:.1f} s, 0 bytes written, peak "
          f"{ours_peak:.2f} GiB); reference's way {args.rows / ref_s:,.1f} rows/s ({ref_s:.1f} s, "
          f"{written / 2**20:.1f} MiB written, peak {ref_peak:.2f} GiB): {speedup:.1f}x")  # fmt: skip
    print(f"scores: Spearman(ours exact, reference projected d={args.proj_dim}) = {rho:.3f}; top-10% overlap "
          f"{top_k_overlap(ours, ref, 0.1):.2f}")  # fmt: skip
    figures = {
        "model": args.model, "device": device, "dtype": args.dtype, "rows": args.rows, "targets": args.targets,
        "checkpoints": args.checkpoints, "rank": args.rank, "lora_weights": lm.gradients.dim, "tokens": tokens,
        "proj_dim": args.proj_dim, "per_row_gradients_rows_per_s": {"ours": args.rows / ours_grad_s,
        "one_backward_per_row": args.rows / ref_grad_s}, "gradient_max_relative_difference": max(errors),
        "end_to_end_rows_per_s": {"ours": args.rows / ours_s, "reference": args.rows / ref_s},
        "speedup": speedup, "bytes_written": {"ours": 0, "reference": written},
        "peak_memory_gib": {"ours": ours_peak, "reference": ref_peak, "kind": "GPU allocated" if device == "cuda"
        else "process RSS, lifetime peak"}, "spearman_exact_vs_projected": rho,
    }  # fmt: skip
    md = (f"| | ours | reference's way |\n|---|---|---|\n"
          f"| per-row gradients, rows/s | {args.rows / ours_grad_s:,.1f} | {args.rows / ref_grad_s:,.1f} |\n"
          f"| end to end, rows/s | {args.rows / ours_s:,.1f} | {args.rows / ref_s:,.1f} |\n"
          f"| disk written | 0 | {written / 2**20:.1f} MiB |\n| peak memory, GiB | {ours_peak:.2f} | {ref_peak:.2f} |\n"
          f"\nSpeed-up end to end: {speedup:.1f}x.")  # fmt: skip
    write_results(f"less_{args.model}_{device}", figures, md)


def seed_noise(args: argparse.Namespace, lm: WarmupModel, pool: list, targets: list, batch_tokens: int, device: str):
    """Scores with two projection seeds and exact; the top-k overlap between them."""
    scores = {}
    for name, seed in [("exact", None), ("seed 0", 0), ("seed 1", 1)]:
        projection = None if seed is None else RademacherProjection(lm.gradients.dim, args.proj_dim, seed)
        means = target_means(lm, [targets], projection=projection, batch_tokens=batch_tokens)
        scores[name] = pool_scores(lm, means.to(device), pool, projection=projection, batch_tokens=batch_tokens)
    overlaps = {}
    for fraction in (0.05, 0.1, 0.25):
        overlaps[f"top {fraction:.0%}"] = {
            "seed 0 vs seed 1": top_k_overlap(scores["seed 0"], scores["seed 1"], fraction),
            "seed 0 vs exact": top_k_overlap(scores["seed 0"], scores["exact"], fraction),
            "seed 1 vs exact": top_k_overlap(scores["seed 1"], scores["exact"], fraction),
        }
        print(f"{fraction:.0%}: " + ", ".join(f"{k} {v:.2f}" for k, v in overlaps[f"top {fraction:.0%}"].items()))
    spread = {
        "exact_score_std": float(np.std(scores["exact"])),
        "projection_error_std": float(np.std(scores["seed 0"] - scores["exact"])),
        "spearman_seed0_seed1": float(np.corrcoef(np.argsort(np.argsort(scores["seed 0"])),
                                                  np.argsort(np.argsort(scores["seed 1"])))[0, 1]),
    }  # fmt: skip
    print(", ".join(f"{k} {v:.4g}" for k, v in spread.items()))
    md = "| top-k | " + " | ".join(next(iter(overlaps.values()))) + " |\n|---|---|---|---|\n"
    md += "".join(f"| {k} | " + " | ".join(f"{x:.2f}" for x in v.values()) + " |\n" for k, v in overlaps.items())
    figures = {"model": args.model, "rows": args.rows, "rank": args.rank, "lora_weights": lm.gradients.dim,
               "proj_dim": args.proj_dim, "checkpoints": args.checkpoints, "top_k_overlap": overlaps}  # fmt: skip
    figures.update(spread)
    md += "\n" + ", ".join(f"{k} {v:.4g}" for k, v in spread.items()) + "\n"
    write_results(f"less_seed_noise_{args.model}", figures, md)


if __name__ == "__main__":
    main()
