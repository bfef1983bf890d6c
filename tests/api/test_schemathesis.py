"""Schemathesis fuzzes every operation of each service's OpenAPI schema, in-process, as admin.

Every response must be no server error (5xx), carry a status code the operation documents, and match
what is documented for that status code: content type, headers and body schema. The apps run on both
backends without rate limiting, so a burst of requests meets the routes, not 429s.

Nothing needs excluding: FastAPI leaves the WebSocket route (/ws, a protocol of its own that
tests/api/test_ws.py covers) out of the schema, as it does the page, /static and /metrics
(include_in_schema=False). The model download stays in: with no trained run, every run id it is
given answers 404 before a file would be streamed.
"""

from __future__ import annotations

import contextlib
import importlib
import pkgutil
from collections.abc import Callable, Iterator
from typing import Any

import hypothesis
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.schemas import BaseSchema

from tars.api.applications import DASHBOARD_API, ORCHESTRATION, create_dashboard_app, create_orchestration_app
from tars.services.runtime import Runtime
from tars.settings import Settings


def _import_schemathesis_whole() -> None:
    """Import every Schemathesis module now, at collection.

    Schemathesis is a pytest plugin, so pytest rewrites its modules as they are imported, and it
    imports many lazily. CPython 3.11.7's ast.parse can fail ("AST constructor recursion depth
    mismatch") when such a rewrite happens deep in a call stack, as it did under a fixture in CI;
    here the stack is shallow (see the anyio import in tests/conftest.py for the same bug).
    """
    for module in pkgutil.walk_packages(schemathesis.__path__, "schemathesis."):
        with contextlib.suppress(ImportError):  # integrations whose packages are not installed (allure)
            importlib.import_module(module.name)


_import_schemathesis_whole()

SERVICES: dict[str, Callable[[Runtime], FastAPI]] = {
    DASHBOARD_API: create_dashboard_app,
    ORCHESTRATION: create_orchestration_app,
}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
EXAMPLES_PER_OPERATION = 20
# The admin's token goes with every case; without this, negative cases would drop or mangle it and meet 401s
# (which tests/api/test_access.py covers) instead of the routes.
CONFIG = {"generation": {"with-security-parameters": False}}


@pytest.fixture(autouse=True)
def _hypothesis_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Hypothesis caches what it learns of the code in .hypothesis/ of the working directory: not in the repo."""
    set_hypothesis_home_dir(tmp_path_factory.mktemp("hypothesis"))
    yield
    set_hypothesis_home_dir(None)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Both backends (PostgreSQL refuses values SQLite takes), with rate limiting off."""
    return settings.model_copy(update={"rate_limit_enabled": False})


@pytest.fixture(params=sorted(SERVICES))
def api_schema(request: pytest.FixtureRequest, runtime: Runtime) -> Iterator[BaseSchema]:
    app = SERVICES[request.param](runtime)
    yield schemathesis.openapi.from_asgi("/openapi.json", app, config=schemathesis.Config.from_dict(CONFIG))
    # Schemathesis keeps each app's lifespan running for the rest of the process; this one's ends with its runtime.
    shutdown_lifespans()


def test_every_operation_answers_as_its_schema_says(
    api_schema: BaseSchema, auth: dict[str, dict[str, str]], subtests: pytest.Subtests
) -> None:
    # One Hypothesis test per operation, run here rather than through schemathesis.pytest.from_fixture,
    # whose runner sets `Node._nodeid`, an attribute pytest 9.2 no longer has.
    operations = [operation for methods in api_schema.values() for operation in methods.values()]
    assert operations
    for operation in operations:
        # Valid requests reach the routes; invalid ones (negative mode) must be refused with a documented 4xx.
        cases = st.one_of([operation.as_strategy(generation_mode=mode) for mode in GenerationMode])

        # A bounded, repeatable run (the same cases for the same code) that writes no example database.
        @hypothesis.settings(max_examples=EXAMPLES_PER_OPERATION, derandomize=True, database=None, deadline=None)
        @hypothesis.given(case=cases)
        def answers_as_documented(case: schemathesis.Case[Any]) -> None:
            # As admin, every operation is reachable: the cases meet the routes' own validation, not a 403.
            # A copy each time: the transport adds its own headers to the dict it is given.
            case.call_and_validate(headers=dict(auth["admin"]), checks=CHECKS)

        with subtests.test(operation.label):
            answers_as_documented()
