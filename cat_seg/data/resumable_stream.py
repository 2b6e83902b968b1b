"""A training data stream that a resumed run continues exactly where the killed one was.

detectron2's ``TrainingSampler`` restarts its shuffled order at every start, and the
augmentations draw from each worker's global random state (seeded anew at every start), so a
run resumed from ``model_0000999.pth`` sees other images and crops than the uninterrupted run
would have: same schedule, different weights.

Here the stream is a pure function of ``(seed, position)``:

* position ``p`` (0, 1, 2, ... over the whole run, all processes together) holds the record
  ``permutation_e[p mod N]`` of epoch ``e = p // N``, the permutation drawn from
  ``numpy.random.default_rng([seed, e])``;
* before mapping (reading, augmenting) position ``p``, Python's, numpy's and torch's global
  random generators are seeded from ``[seed, p]``, so crops, flips and colour jitter are too;
* iteration ``i`` of a run with total batch ``B`` consumes positions ``[i·B, (i+1)·B)``; process
  ``r`` of ``W`` takes the slice ``[i·B + r·B/W, i·B + (r+1)·B/W)``, and with ``K`` loader workers
  worker ``k`` builds the batches ``i ≡ k (mod K)``, which the ``DataLoader`` returns in order.

:attr:`ResumableTrainingStream.start_iter` is set after ``--resume`` read the checkpoint (the
iterator is created at the first step), and the seed is saved in the checkpoint
(:meth:`state_dict`), so a run started with ``SEED -1`` (a random seed) resumes with its own.
"""
import copy
import random
from typing import Callable, List, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info


def _seed_for(seed: int, position: int) -> int:
    return int(np.random.SeedSequence([seed, position]).generate_state(1)[0])


class ResumableTrainingStream(IterableDataset):
    """Infinite stream of mapped training records (see the module doc for the exact order)."""

    def __init__(self, records: Sequence[dict], mapper: Callable[[dict], dict], seed: int,
                 batch_size_per_process: int, rank: int = 0, world_size: int = 1):
        if not records:
            raise ValueError("the training datasets (DATASETS.TRAIN) hold no record; check that "
                             "they are prepared and not empty")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.records: List[dict] = list(records)
        self.mapper = mapper
        self.seed = int(seed)
        self.batch_size = int(batch_size_per_process)
        self.rank, self.world_size = int(rank), int(world_size)
        self.start_iter = 0
        self._permutation_epoch: Optional[int] = None
        self._permutation: Optional[np.ndarray] = None

    # ------------------------------------------------------------------ checkpointable
    def state_dict(self) -> dict:
        return {"seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.seed = int(state["seed"])

    # ------------------------------------------------------------------ order
    def record_index(self, position: int) -> int:
        n = len(self.records)
        epoch = position // n
        if epoch != self._permutation_epoch:
            self._permutation = np.random.default_rng([self.seed, epoch]).permutation(n)
            self._permutation_epoch = epoch
        return int(self._permutation[position % n])

    def positions(self, iteration: int) -> range:
        """Stream positions this process maps for ``iteration``."""
        first = (iteration * self.world_size + self.rank) * self.batch_size
        return range(first, first + self.batch_size)

    def sample(self, position: int) -> dict:
        seed = _seed_for(self.seed, position)
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        return self.mapper(copy.deepcopy(self.records[self.record_index(position)]))

    def __iter__(self):
        worker = get_worker_info()
        worker_id, num_workers = (worker.id, worker.num_workers) if worker is not None else (0, 1)
        iteration = self.start_iter + worker_id
        while True:
            for position in self.positions(iteration):
                yield self.sample(position)
            iteration += num_workers
