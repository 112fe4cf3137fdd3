"""The admin rule builder's JavaScript, run under Node with a tiny DOM (skipped without Node):
every field and operator renders, and mouse actions write the rules JSON the server accepts."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from segments.admin import _ref_options, builder_labels
from segments.catalog import catalog_as_json
from segments.rules import validate_rules
from tests.segments.conftest import World

pytestmark = pytest.mark.django_db

HARNESS = Path(__file__).parent / "js" / "builder_harness.js"
SCRIPT = Path(settings.BASE_DIR) / "static" / "segments" / "rule-builder.js"


def test_builder_renders_everything_and_writes_valid_rules(world: World, tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed")
    start: dict[str, Any] = {
        "match": "all",
        "rules": [{"field": "gender", "operator": "in", "value": ["f"]}],
    }
    config = {
        "catalog": catalog_as_json(),
        "refs": _ref_options(start),
        "preview_url": "/preview/",
        "lookup_url": "/lookup/",
        "segment_id": None,
        "labels": builder_labels(),
        "test_pick_category": world.cat_food.pk,  # read by the harness, ignored by the builder
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "rules.json").write_text(json.dumps(start))

    run = subprocess.run(
        [
            node,
            str(HARNESS),
            str(SCRIPT),
            str(tmp_path / "config.json"),
            str(tmp_path / "rules.json"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    rules = out["rules"]
    assert rules["rules"][0] == {"field": "gender", "operator": "in", "value": ["f"]}
    assert rules["rules"][1] == {
        "field": "age",
        "operator": "between",
        "negate": False,
        "value": [30, 40],
    }
    group = rules["rules"][2]
    assert group["match"] == "any" and group["negate"] is True
    assert group["rules"][0]["field"] == "bought_category"
    assert group["rules"][0]["period"] == {"last_days": 30}
    assert group["rules"][0]["value"] == [world.cat_food.pk]
    assert rules["rules"][3]["value"] == [99]
    assert out["previews"] > 0
    assert out["invalid"] == ["rules[0]"]
    rules["rules"][3]["value"] = [world.laptop.pk]
    assert validate_rules(rules)  # what the builder wrote is valid
