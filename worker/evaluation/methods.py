"""The methods the harness compares, by name (no imports: the CLI's choices read it)."""

EXPLAINED = (
    "shapley",
    "shapley-answer",
    "shapley-logprob",
    "banzhaf",
    "banzhaf-answer",
    "banzhaf-logprob",
)
"""``shapley``: the service's default request (the answer game with log p(y) scored on the
same coalitions; its passage ranking's scores, the log p(y) column). ``shapley-answer``:
y's column of the answer game in that same job (same coalitions, same seconds).
``shapley-logprob``: a request for the log-probability game alone. Banzhaf likewise."""
FIXED_BUDGET = ("banzhaf-logprob-32", "banzhaf-logprob-64")
"""``<method>-<game>-<budget>``: the same request at that budget whatever the run's
``--budget`` (Banzhaf on the log p game at 32 coalitions matched ContextCite-64's LDS on the
8-document tables: is it so on the runs? At 20 documents 32 coalitions run its Lasso and 64
its regression, beside ContextCite at 32 and 64 ablations)."""
CONTEXTCITE = ("contextcite-32", "contextcite-64")
"""The released package, running the model itself (its seconds are as released)."""
CONTEXTCITE_ENGINE = ("contextcite-engine-32", "contextcite-engine-64")
"""The same masks, output and solver, the ablations' log p(y) from our batched engine
(scores equal the package's; seconds are ContextCite's on this engine)."""
METHODS = (
    "given",
    "attention",
    "loo",
    *EXPLAINED,
    *FIXED_BUDGET,
    *CONTEXTCITE,
    *CONTEXTCITE_ENGINE,
)
