"""Pure Python/NumPy Shapley core: segmentation, games, estimators, hierarchy, ranking.

Nothing here imports torch: estimators see only a value function over coalitions.
"""
