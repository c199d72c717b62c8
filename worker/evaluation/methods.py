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
CONTEXTCITE = ("contextcite-32", "contextcite-64")
"""The released package, running the model itself (its seconds are as released)."""
CONTEXTCITE_ENGINE = ("contextcite-engine-32", "contextcite-engine-64")
"""The same masks, output and solver, the ablations' log p(y) from our batched engine
(scores equal the package's; seconds are ContextCite's on this engine)."""
METHODS = ("given", "attention", "loo", *EXPLAINED, *CONTEXTCITE, *CONTEXTCITE_ENGINE)
