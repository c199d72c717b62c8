"""How coalitions sit in memory: tree and linear rows, packing, caches, the prefix store,
the memory budget."""
