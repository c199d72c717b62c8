"""Session-scoped tiny engines and a small document set shared by the engine tests."""

from __future__ import annotations

import numpy as np
import pytest

from worker.engine.base import Engine
from worker.engine.loading.registry import load_engine
from worker.shapley import segment
from worker.shapley.units import Document, Unit

QUESTION = "Who wrote the report?"
DOCS = [
    Document("The report was written by Ada. It was long.", "Report"),
    Document("Bob reviewed it twice. He liked it.", "Review"),
    Document("Paris is in France. The weather was fine.", "Paris"),
    Document("Cats sleep a lot. Dogs bark.", "Pets"),
    Document("The author is Ada Lovelace. She was a mathematician.", "Author"),
]


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> None:
    """Tiny models gain nothing from intra-op threads, and on a shared 2-core machine
    thread contention makes them ten times slower."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def engines() -> dict[str, Engine]:
    """Every tiny engine, loaded once (they are built from seeded configs in milliseconds)."""
    names = ["tiny-llama", "tiny-gemma", "tiny-t5", "tiny-t5-fid"]
    return {name: load_engine(name, device="cpu") for name in names}


def mixed_units() -> list[Unit]:
    """Whole documents plus the sentences of two refined documents, as a hierarchy level has."""
    units = [u for u in segment.document_units(DOCS) if u.document not in (0, 4)]
    return segment.sentence_units(DOCS, 0) + units + segment.sentence_units(DOCS, 4)


def random_masks(n_units: int, count: int, seed: int) -> np.ndarray:
    """Random coalitions with the full and the empty coalition first."""
    rng = np.random.default_rng(seed)
    masks = rng.random((count, n_units)) < rng.uniform(0.2, 0.9, (count, 1))
    masks[0], masks[1] = True, False
    return masks
