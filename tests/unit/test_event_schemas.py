"""The event catalogue may only grow: a JSON Schema snapshot per event catches incompatible changes.

After an additive change (a new optional field) record it with TARJOTIN_UPDATE_SNAPSHOTS=1; a breaking
change (field removed, type changed, new required field) needs a new `.v2` event instead.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from shared.events import CATALOGUE, EventData

SNAPSHOTS = Path(__file__).parent / "snapshots" / "events"


def schema_of(model: type[EventData]) -> dict[str, Any]:
    return model.model_json_schema(mode="serialization")


def incompatibilities(old: dict[str, Any], new: dict[str, Any], path: str = "") -> list[str]:
    """What a consumer built against `old` would trip over in `new`."""
    problems = []
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    for name, old_prop in old_props.items():
        if name not in new_props:
            problems.append(f"{path}{name}: removed")
        elif _shape(old_prop) != _shape(new_props[name]):
            problems.append(f"{path}{name}: type changed from {_shape(old_prop)} to {_shape(new_props[name])}")
    for name in set(new.get("required", [])) - set(old.get("required", [])):
        problems.append(f"{path}{name}: became required")
    for name, old_def in old.get("$defs", {}).items():
        if name in new.get("$defs", {}):
            problems += incompatibilities(old_def, new["$defs"][name], f"{path}{name}.")
    return problems


def _shape(prop: dict[str, Any]) -> Any:
    keys = ("type", "$ref", "anyOf", "format", "items", "enum")
    return {k: prop[k] for k in keys if k in prop}


@pytest.mark.parametrize("model", CATALOGUE, ids=lambda m: m.type_name())
def test_event_schema_matches_its_snapshot(model: type[EventData]) -> None:
    snapshot = SNAPSHOTS / f"{model.type_name()}.json"
    current = schema_of(model)
    if os.environ.get("TARJOTIN_UPDATE_SNAPSHOTS") == "1" or not snapshot.exists():
        if snapshot.exists():
            problems = incompatibilities(json.loads(snapshot.read_text()), current)
            assert not problems, f"{model.type_name()} changed incompatibly; publish a .v2 instead: {problems}"
        snapshot.parent.mkdir(parents=True, exist_ok=True)
        snapshot.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
        if os.environ.get("CI"):
            pytest.fail(f"snapshot {snapshot.name} was missing in CI; commit it")
    recorded = json.loads(snapshot.read_text())
    problems = incompatibilities(recorded, current)
    assert not problems, f"{model.type_name()} changed incompatibly; publish a .v2 instead: {problems}"
    assert recorded == current, f"{model.type_name()} changed compatibly; record it with TARJOTIN_UPDATE_SNAPSHOTS=1"


def test_checker_flags_a_removed_field_a_type_change_and_a_new_required_field() -> None:
    old = {"properties": {"a": {"type": "string"}, "b": {"type": "integer"}}, "required": ["a"]}
    new = {"properties": {"b": {"type": "string"}, "c": {"type": "string"}}, "required": ["c"]}
    assert sorted(incompatibilities(old, new)) == [
        "a: removed",
        "b: type changed from {'type': 'integer'} to {'type': 'string'}",
        "c: became required",
    ]


def test_checker_accepts_a_new_optional_field() -> None:
    old = {"properties": {"a": {"type": "string"}}, "required": ["a"]}
    new = {"properties": {"a": {"type": "string"}, "b": {"type": "string"}}, "required": ["a"]}
    assert incompatibilities(old, new) == []


def test_every_event_type_is_versioned_and_unique() -> None:
    names = [model.type_name() for model in CATALOGUE]
    assert len(names) == len(set(names))
    assert all(name.startswith("fi.tarjotin.") and name.rsplit(".", 1)[1].startswith("v") for name in names)


def test_events_carry_no_personal_data() -> None:
    forbidden = {"name", "email", "learner_id", "student_name", "student_email"}
    for model in CATALOGUE:
        assert not forbidden & set(model.model_fields), model.type_name()


def test_the_committed_asyncapi_document_is_current() -> None:
    from shared.events.asyncapi import document

    committed = json.loads((Path(__file__).parents[2] / "docs" / "asyncapi.json").read_text())
    assert committed == json.loads(json.dumps(document(), sort_keys=True, default=str)), (
        "regenerate it: python -m shared.events.asyncapi > docs/asyncapi.json"
    )
    assert set(committed["channels"]) == {model.name.replace(".", "_") for model in CATALOGUE}
    for message in committed["components"]["messages"].values():
        ref = message["payload"]["properties"]["data"]["$ref"].rsplit("/", 1)[1]
        assert ref in committed["components"]["schemas"]
