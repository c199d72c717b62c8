"""The queue adapters: Redis (``redis_queue``, with ``redis_base`` for key names, Lua
scripts and the connection, and ``redis_limiter``) and in-process (``memory_queue`` and
``memory_limiter``, the embedded default). Each implements
``service.contract.jobs.JobQueue`` and makes its own per-key ``Limiter`` on its own store,
so the Redis and embedded modes differ only in the queue object; these are the only
modules that speak Redis.
"""
