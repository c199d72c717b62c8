"""The words a result uses where an estimator could not measure a standard error."""

from __future__ import annotations

from worker.shapley.banzhaf import BanzhafLasso
from worker.shapley.layered import MIN_SPREAD_PAIRS, PARTIAL
from worker.shapley.layered import NAME as LAYERED
from worker.shapley.sampling import Estimate

LASSO = BanzhafLasso.name


def stderr_note(est: Estimate) -> str:
    """Why some of a level's standard errors are null, in words a user can act on."""
    if est.method == PARTIAL:
        return (
            "the budget holds only part of the layered estimator's first layer (every "
            "feature alone and left out, 2n + 2 coalitions): its scores are measured "
            "marginals, not samples, so no standard error can be measured; raise the budget"
        )
    if est.method == LASSO:
        return (
            "the budget holds fewer than the 2n + 8 coalitions Banzhaf's regression needs: "
            "its scores come from a Lasso fit, shrunk toward 0, with no standard error; "
            "raise the budget"
        )
    needs = MIN_SPREAD_PAIRS if est.method == LAYERED else 2
    if est.samples >= needs:
        return (
            "some standard errors are null: the sampled coalitions showed no spread to "
            "measure them (an answer no sampled coalition produced, scored by the "
            "efficiency constraint alone, or a feature whose sampled pairs all agree once "
            "that constraint is applied); raise the budget"
        )
    return (
        f"{est.samples} independent sample(s) of the {est.method} estimator fit the budget: "
        f"a standard error needs the spread of at least {needs}, so it is null; raise the "
        "budget"
    )
