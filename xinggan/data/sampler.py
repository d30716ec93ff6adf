"""Seeded, resumable, infinite sampling of training pairs by iteration.

The released code counts "epochs" of 4,000 random pairs (125 iterations at batch 32); we count
iterations. The stream concatenates permutations ``default_rng([seed, e]).permutation(n)``;
iteration ``it`` takes ``stream[it * B:(it + 1) * B]`` and rank ``r`` its ``r``-th contiguous
share, so resuming with ``set_iteration(it)`` is exact, even with another number of ranks.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
from torch.utils.data import Sampler

__all__ = ["OFFICIAL_EPOCH_PAIRS", "IterationSampler", "official_epoch_iterations"]

# Pairs in one "epoch" of the released training code.
OFFICIAL_EPOCH_PAIRS = 4000


def official_epoch_iterations(batch_size: int = 32) -> int:
    """Iterations in one official epoch of 4,000 pairs: 125 at batch 32."""
    if OFFICIAL_EPOCH_PAIRS % batch_size:
        raise ValueError(f"batch size {batch_size} does not divide {OFFICIAL_EPOCH_PAIRS}")
    return OFFICIAL_EPOCH_PAIRS // batch_size


class IterationSampler(Sampler[int]):
    """Endless seeded stream of dataset indices, addressed by training iteration."""

    def __init__(self, num_items: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        if num_items < 1:
            raise ValueError(f"num_items must be positive, got {num_items}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        if batch_size < 1 or batch_size % world_size:
            raise ValueError(f"the global batch size {batch_size} must be a positive multiple of "
                             f"world_size {world_size}")
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        self.num_items = int(num_items)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.per_rank_batch = self.batch_size // self.world_size
        self.iteration = 0
        self._blocks: dict[int, np.ndarray] = {}

    def _block(self, block: int) -> np.ndarray:
        perm = self._blocks.get(block)
        if perm is None:
            perm = np.random.default_rng([self.seed, block]).permutation(self.num_items)
            if len(self._blocks) >= 2:
                self._blocks.pop(min(self._blocks))
            self._blocks[block] = perm
        return perm

    def _stream(self, start: int, stop: int) -> np.ndarray:
        out = []
        while start < stop:
            block, offset = divmod(start, self.num_items)
            take = min(stop - start, self.num_items - offset)
            out.append(self._block(block)[offset:offset + take])
            start += take
        return np.concatenate(out)

    def global_batch(self, iteration: int) -> list[int]:
        """All ``batch_size`` indices of ``iteration`` across ranks."""
        start = iteration * self.batch_size
        return self._stream(start, start + self.batch_size).tolist()

    def indices(self, iteration: int) -> list[int]:
        """This rank's ``per_rank_batch`` indices of ``iteration``."""
        start = iteration * self.batch_size + self.rank * self.per_rank_batch
        return self._stream(start, start + self.per_rank_batch).tolist()

    def set_iteration(self, iteration: int) -> None:
        """Make the next iterator start at ``iteration``."""
        if iteration < 0:
            raise ValueError(f"iteration must be non-negative, got {iteration}")
        self.iteration = int(iteration)

    def __iter__(self) -> Iterator[int]:
        iteration = self.iteration
        while True:
            batch = self.indices(iteration)
            for j, index in enumerate(batch):
                if j == len(batch) - 1:
                    # Count the batch as handed out once its last index is.
                    self.iteration = iteration + 1
                yield index
            iteration += 1

    def state_dict(self) -> dict:
        return {"seed": self.seed, "iteration": self.iteration, "num_items": self.num_items,
                "batch_size": self.batch_size}

    def load_state_dict(self, state: dict) -> None:
        for key in ("num_items", "batch_size"):
            if state[key] != getattr(self, key):
                raise ValueError(f"sampler state has {key}={state[key]} but this sampler has "
                                 f"{getattr(self, key)}: the pair stream would differ")
        self.seed = int(state["seed"])
        self._blocks.clear()
        self.set_iteration(state["iteration"])
