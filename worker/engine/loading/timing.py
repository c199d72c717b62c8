"""Load-time measurements that choose between two ways of computing the same thing."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_seconds(run: Callable[[], object], repeats: int) -> float:
    """The fastest of ``repeats`` timed calls after one untimed warm-up call: the least
    disturbed measure on a shared machine (a busy neighbour only ever adds time)."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)
