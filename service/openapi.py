"""Print the gateway's OpenAPI document as YAML: ``python -m service.openapi > openapi.yaml``.

``openapi.yaml`` is the published contract; a test keeps it equal to what the app
generates, so regenerate it with this command whenever routes or schemas change.
"""

from __future__ import annotations

import sys

import yaml

from service.app import openapi_schema


def render() -> str:
    """The schema as YAML with keys in the app's order (stable diffs)."""
    return yaml.safe_dump(openapi_schema(), sort_keys=False, allow_unicode=True, width=100)


if __name__ == "__main__":
    sys.stdout.write(render())
