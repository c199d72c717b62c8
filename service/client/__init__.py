"""What runs on the caller's side of the HTTP API: the Python client (``api``: ``Client``
and ``AsyncClient``), the ``textgenshap explain --url`` remote command (``remote_cli``)
and the self-contained HTML report (``report``). Imports the contract and httpx, never
the gateway's server modules or the worker.
"""
