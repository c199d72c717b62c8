"""Where the shared evaluation data lives, without hard-coding one machine's layout.

The data sits in ``shared/data`` beside the repository (``../shared/data`` from its root),
both in a developer's checkout and in CI's fresh clone; ``TEXTGENSHAP_DATA_DIR`` overrides.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_data_dir() -> Path:
    """The folder holding ``nq/`` and ``miracl/``."""
    override = os.environ.get("TEXTGENSHAP_DATA_DIR")
    return Path(override) if override else REPO_ROOT.parent / "shared" / "data"


def nq_file(documents: int = 10) -> Path:
    """The NaturalQuestions-open dev file with 10 or 20 documents per question."""
    return shared_data_dir() / "nq" / f"nq-open-dev-{documents}docs.jsonl.gz"
