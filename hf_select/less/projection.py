"""A seeded Rademacher random projection, generated block by block: never a full matrix in memory.

The projection matrix `R` is [dim_in, d] with entries +-1. Its rows come in blocks of `BLOCK` rows; block k
(rows `k*BLOCK` to `(k+1)*BLOCK`, the last one shorter) is

    torch.randint(0, 2, (rows, d), generator=torch.Generator(device).manual_seed(block_seed(seed, k))) * 2 - 1

with `block_seed(seed, k)` the first 4 bytes (little-endian) of `sha256(f"{seed}/{k}")`: 32 bits, since torch's
CPU generator (mt19937) keeps only the low 32 bits of a seed.

so any block can be made alone, and `x @ R` is the sum over blocks of `x[:, block] @ R[block]`. The matrix
depends only on (seed, dim_in, d) and the device type (torch's CPU and CUDA generators differ): it is the
same whatever the batch, the process or the GPU rank. Scale does not matter (LESS normalises after
projecting), so no `1/sqrt(d)` factor is applied.

Example:
    >>> import torch
    >>> proj = RademacherProjection(dim_in=10, d=4, seed=0)
    >>> x = torch.randn(3, 10)
    >>> torch.allclose(proj(x), x @ proj.dense(), atol=1e-5)
    True
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

BLOCK = 4096
"""Rows of the projection matrix generated at once (a fixed part of the matrix's definition)."""


def block_seed(seed: int, k: int) -> int:
    """The 32-bit generator seed of block k: the first 4 bytes of sha256(f"{seed}/{k}"), little-endian."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{k}".encode()).digest()[:4], "little")


def rademacher_block(seed: int, k: int, rows: int, d: int, device: str | torch.device = "cpu") -> torch.Tensor:
    """Block k of the matrix: [rows, d] int8 entries +-1, from the generator seeded `block_seed(seed, k)`."""
    generator = torch.Generator(device=device).manual_seed(block_seed(seed, k))
    bits = torch.randint(0, 2, (rows, d), generator=generator, device=device, dtype=torch.int8)
    return bits * 2 - 1


@dataclass(frozen=True)
class RademacherProjection:
    """`x @ R` for x [rows, dim_in] without holding R: each block is generated, used and dropped."""

    dim_in: int
    d: int = 8192
    seed: int = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """[rows, d] float32 projection of x [rows, dim_in] (blocks generated on x's device)."""
        if x.shape[-1] != self.dim_in:
            raise ValueError(f"expected vectors of {self.dim_in} values, got {x.shape[-1]}")
        out = torch.zeros((x.shape[0], self.d), dtype=torch.float32, device=x.device)
        dtype = torch.float32 if x.dtype == torch.float32 else x.dtype
        for k, lo in enumerate(range(0, self.dim_in, BLOCK)):
            hi = min(lo + BLOCK, self.dim_in)
            block = rademacher_block(self.seed, k, hi - lo, self.d, x.device).to(dtype)
            out += (x[:, lo:hi].to(dtype) @ block).float()
        return out

    def dense(self, device: str | torch.device = "cpu") -> torch.Tensor:
        """The whole [dim_in, d] matrix as float32, for tests and small inputs only."""
        blocks = [
            rademacher_block(self.seed, k, min(lo + BLOCK, self.dim_in) - lo, self.d, device)
            for k, lo in enumerate(range(0, self.dim_in, BLOCK))
        ]
        return torch.cat(blocks).float()
