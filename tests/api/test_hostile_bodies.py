"""No body a client can send makes any route answer 5xx: the whole class, on every route that takes one.

The routes are read from each service's own OpenAPI document, so a route added later is covered
without a change here. Each gets bodies that are not JSON, JSON that is not an object, values JSON
can parse but not write back (NaN, Infinity, 1e999, lone surrogates) in every field its schema
names and in its keys, wrong types, and nesting deeper than any body of ours.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tars.services.runtime import Runtime
from tests.insight_records import observation

# Values the json module reads but cannot write back as standard JSON, or that UTF-8 cannot encode.
UNRENDERABLE = ["NaN", "Infinity", "-Infinity", "1e999", '"\\ud800"', '"a\\udfffb"']
OTHER_VALUES = ["null", "true", "-1", "0", "1e308", "123456789012345678901234567890", '""', '"\\u0000"', "[]", "{}"]
WHOLE_BODIES = [
    b"",
    b"NaN",
    b"[NaN]",
    b"{",
    b'{"a": 1',
    b"\xff\xfe\x00",  # not UTF-8
    b'{"\\ud800": 1}',
    b'{"a": NaN, "b": Infinity}',
    b"[" * 3000 + b"]" * 3000,
    b'{"a":' * 500 + b"1" + b"}" * 500,
    json.dumps({"items": [{}] * 3}).encode(),
]


def _strict_json(text: str) -> Any:
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def _body_operations(client: TestClient) -> Iterator[tuple[str, str, list[str]]]:
    document = client.get("/openapi.json").json()
    schemas = document.get("components", {}).get("schemas", {})
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if "requestBody" not in operation:
                continue
            schema = operation["requestBody"]["content"]["application/json"]["schema"]
            # An optional body is documented as anyOf [the model, null]: its fields are the model's.
            schema = next((option for option in schema.get("anyOf", []) if "$ref" in option), schema)
            if "$ref" in schema:
                schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
            yield method.upper(), re.sub(r"\{[^}]+\}", "1", path), list(schema.get("properties", {}))


def _hostile_bodies(fields: list[str]) -> Iterator[bytes]:
    yield from WHOLE_BODIES
    for value in UNRENDERABLE + OTHER_VALUES:
        yield f'{{"{fields[0] if fields else "x"}": {value}}}'.encode()
        if fields:
            # Every field at once, so each field's validator meets the value.
            yield ("{" + ", ".join(f'"{field}": {value}' for field in fields) + "}").encode()
            yield ("{" + ", ".join(f'"{field}": [{value}]' for field in fields) + "}").encode()
            yield ("{" + ", ".join(f'"{field}": {{"k": {value}}}' for field in fields) + "}").encode()


def _assert_no_body_yields_a_server_error(client: TestClient, headers: dict[str, str]) -> None:
    operations = list(_body_operations(client))
    assert operations, "the service documents no route that takes a body"
    failures = []
    for method, path, fields in operations:
        for body in _hostile_bodies(fields):
            response = client.request(
                method, path, content=body, headers={**headers, "Content-Type": "application/json"}
            )
            if response.status_code >= 500:
                failures.append(f"{method} {path} {body[:80]!r} -> {response.status_code}")
                continue
            try:
                _strict_json(response.text)
            except ValueError as exc:
                failures.append(f"{method} {path} {body[:80]!r} -> body is not standard JSON ({exc})")
    # Nothing a hostile body left behind makes a read fail: every listing still renders as standard JSON.
    for path, operations in client.get("/openapi.json").json()["paths"].items():
        if "get" in operations and "{" not in path and path.startswith("/api/"):
            response = client.get(path, headers=headers)
            if response.status_code >= 500:
                failures.append(f"GET {path} after the hostile bodies -> {response.status_code}")
            elif response.headers.get("content-type", "").startswith("application/json"):
                _strict_json(response.text)
    assert not failures, "\n".join(failures)


@pytest.fixture
def client_headers(auth: dict[str, dict[str, str]]) -> dict[str, str]:
    # The admin may call every route, so each body reaches its validation rather than a 403.
    return auth["admin"]


def test_no_body_makes_the_dashboard_api_fail(
    dashboard: TestClient, client_headers: dict[str, str], runtime: Runtime
) -> None:
    # Routes on an insight (its id is 1 where paths are walked): bodies reach the stored one, not a 404.
    [insight] = runtime.insights.apply([observation()])
    assert insight.id == 1
    _assert_no_body_yields_a_server_error(dashboard, client_headers)


def test_no_body_makes_orchestration_fail(orchestration: TestClient, client_headers: dict[str, str]) -> None:
    _assert_no_body_yields_a_server_error(orchestration, client_headers)


def test_non_finite_numbers_and_lone_surrogates_are_named_in_a_422(
    dashboard: TestClient, client_headers: dict[str, str]
) -> None:
    headers = {**client_headers, "Content-Type": "application/json"}
    for body, field in (
        (b'{"agent_id": "ppo", "environment": "CartPole-v1", "reward": NaN}', "reward"),
        (b'{"agent_id": "ppo", "environment": "CartPole-v1", "reward": 1e999}', "reward"),
        (b'{"agent_id": "\\ud800", "environment": "CartPole-v1", "reward": 1}', "agent_id"),
    ):
        response = dashboard.post("/api/v1/evaluations", content=body, headers=headers)
        assert response.status_code == 422, response.text
        problems = _strict_json(response.text)["detail"]
        [problem] = problems
        # Either the field is named, or (a JSON parser refusing the text outright) the body and why.
        named_field = problem["loc"] == ["body", field]
        refused_text = problem["loc"] == ["body"] and ("surrogate" in problem["msg"] or "escape" in problem["msg"])
        assert named_field or refused_text, problem
    assert dashboard.get("/api/v1/evaluations", headers=client_headers).json()["items"] == []
