"""Pure Python/NumPy Shapley core: segmentation, games, estimators, hierarchy, ranking.

Nothing here imports torch: estimators see only a value function over coalitions.

Map (one job per module):
- ``units``, ``oracle``: shared vocabulary and the model protocol (lead-owned).
- ``segment``: documents -> sentences -> words with exact offsets; masking helpers.
- ``game``: memoised, batched categorical and real games; ``normalize_answer``.
- ``sampling``: the ``Estimate`` type and the budgeted sampling loop.
- ``exact``, ``permutation``, ``owen``, ``kernel``, ``banzhaf``: one estimator family each.
- ``estimators``: ``estimate(game, method, estimator, budget, seed, target_stderr)``.
- ``coalitions``: the job-wide cache that decodes each distinct model input once.
- ``hierarchy``: level-by-level refinement; ``ranking``: candidates and passages.
- ``errors``: ``ShapleyInputError`` for bad input.
"""
