"""Fixtures shared by every test tier."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest

SEED_VARIABLE = "RATEWIRE_SEED"


class SeededRandom(random.Random):
    """``random.Random`` that remembers its seed and shows it in its repr."""

    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        self.seed_value = seed

    def __repr__(self) -> str:
        return f"SeededRandom({self.seed_value})"

    def numpy(self) -> np.random.Generator:
        """A numpy generator seeded the same way, for array-valued test data."""
        return np.random.default_rng(self.seed_value)


@pytest.fixture
def rng() -> SeededRandom:
    """A random source with a fresh seed per test, printed so a failure can be replayed.

    pytest shows a failing test's captured output, so the seed appears under
    "Captured stdout setup"; rerun with ``RATEWIRE_SEED=<seed> pytest …``.
    """
    fixed = os.environ.get(SEED_VARIABLE)
    seed = int(fixed) if fixed else random.SystemRandom().randrange(2**32)
    print(f"rng seed: {seed} (replay with {SEED_VARIABLE}={seed})")
    return SeededRandom(seed)
