"""The contract between the gateway and the workers: request and result schemas, job
records and the queue protocol, deployment settings.

A leaf package: it imports pydantic, pydantic-settings and the standard library only
(tests/test_architecture.py enforces it), so a worker imports what it shares with the
gateway from here without pulling in FastAPI or Redis.
"""
