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
METHODS = ("given", "attention", "loo", *EXPLAINED, *CONTEXTCITE)
