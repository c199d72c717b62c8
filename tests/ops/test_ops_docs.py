"""docs/deploy.md stays in step with what ships: every alert, dashboard and pinned version
it names is the one in the files."""

from __future__ import annotations

import re

from ops_assets import DOCKERFILE, ROOT, alert_exprs, dashboards

DEPLOY = (ROOT / "docs" / "deploy.md").read_text()


def test_every_alert_is_documented_and_no_other() -> None:
    documented = set(re.findall(r"^\| `(Textgenshap\w+)` \|", DEPLOY, re.M))
    assert documented == set(alert_exprs())


def test_every_dashboard_is_documented_by_title_and_uid() -> None:
    for board in dashboards().values():
        assert f"**{board['title']}** (`{board['uid']}`" in DEPLOY


def test_pinned_gpu_stack_in_the_doc_matches_the_dockerfile() -> None:
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", DOCKERFILE.read_text(), re.M))
    assert f"`{args['CUDA_IMAGE']}`" in DEPLOY
    assert f"| torch | {args['TORCH_VERSION']} from `{args['TORCH_INDEX_URL']}`" in DEPLOY
    wheel = args["FLASH_ATTN_WHEEL"].rsplit("/", 1)[1]
    version, tag = re.fullmatch(r"flash_attn-([\d.]+)\+(\S+)\.whl", wheel).groups()
    assert f"| flash-attn | {version}, wheel `{tag}` |" in DEPLOY
