"""The field definitions read two ways must agree: what the validator accepts, the CRD's
OpenAPI schema accepts (the API server itself is checked in tests/test_kube_crds.py)."""

from __future__ import annotations

import re

import pytest

from controlplane.crds import policy_crds
from controlplane.durations import InvalidDuration, parse_duration
from controlplane.policyschema import KINDS
from controlplane.schema import DURATION_PATTERN, Obj, openapi


@pytest.mark.parametrize("text", ["500ms", "2s", "1m", "24h", "1h30m", "1.5s", "7d", " 3s ", "", "s", "3", "3 s", "-1s", "1.s", "3sec"])
def test_the_duration_pattern_accepts_what_parse_duration_does(text):
    try:
        parse_duration(text)
        valid = True
    except InvalidDuration:
        valid = False
    assert bool(re.search(DURATION_PATTERN, text)) is valid


def _objects(schema: dict) -> list[dict]:
    found = [schema] if schema.get("type") == "object" else []
    for sub in (schema.get("properties") or {}).values():
        found += _objects(sub)
    if "items" in schema:
        found += _objects(schema["items"])
    return found


def test_every_object_in_the_crds_says_what_it_holds():
    """A structural schema: every object lists its properties (or its values' type), so the API
    server prunes nothing silently and `kubectl explain` can describe every field."""
    for crd in policy_crds():
        spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        for obj in _objects(spec):
            assert "properties" in obj or "additionalProperties" in obj, (crd["metadata"]["name"], obj)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_required_fields_match(kind):
    _api, spec = KINDS[kind]
    assert isinstance(spec, Obj)
    assert sorted(spec.required) == openapi(spec).get("required", [])
