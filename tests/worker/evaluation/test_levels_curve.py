"""bench/levels_curve.py records the game the service plays at the sentence level."""

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from bench.levels_curve import sentence_level, table  # noqa: E402
from tests.fakes import FakeOracle  # noqa: E402
from worker.shapley.coalitions import CoalitionCache  # noqa: E402
from worker.shapley.game import LOGPROB_KEY  # noqa: E402
from worker.shapley.hierarchy import Hierarchy, LevelScores, Plan  # noqa: E402
from worker.shapley.sampling import Estimate  # noqa: E402
from worker.shapley.segment import document_units  # noqa: E402
from worker.shapley.units import Document  # noqa: E402

DOCS = [
    Document("Bananas are yellow. They grow in warm places.", "Fruit"),
    Document("Paris is the capital of France. It has the Eiffel Tower. Tourists visit.", "Paris"),
    Document("Rome is the capital of Italy.", "Rome"),
]


def test_the_sentence_players_are_the_hierarchy_s_when_it_refines_the_top_document() -> None:
    mean = np.array([[0.1], [2.0], [0.3]])
    est = Estimate(mean, np.zeros_like(mean), 8, [LOGPROB_KEY], "exact")
    plan = Plan(k=1, answer_text="Paris")
    hierarchy = Hierarchy(DOCS, CoalitionCache(FakeOracle("q?", DOCS)), plan)
    refined = hierarchy.refine(LevelScores("document", document_units(DOCS), est))
    assert sentence_level(DOCS, 1) == refined
    assert [u.level for u in refined] == ["document", *["sentence"] * 3, "document"]


def test_a_table_holds_every_coalition_of_the_players() -> None:
    """The fake answers "Paris" where "France" is shown (p 0.9, else 0.1, less 0.001 per
    context word): only coalitions holding the first sentence of document 1 reach it."""
    session = FakeOracle("Which city?", DOCS, rules=[("France", "Paris")])
    players = sentence_level(DOCS, 1)
    values, seconds = table(session, players, "Paris")
    assert len(values) == 2 ** len(players)
    assert seconds >= 0
    assert values["01000"] - values["00000"] > np.log(9) - 0.05
    assert values["00000"] - 0.05 < values["00100"] < values["00000"]  # length only
    assert values["11111"] - values["10111"] > np.log(9) - 0.05
