"""Every route declares who may call it, and every role gets exactly that: walked over the route
table of both services, so a new route without a declaration fails here."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, APIWebSocketRoute
from fastapi.testclient import TestClient
from starlette.routing import BaseRoute, Mount, Route

from tars.api.deps import declared_access
from tars.domain.users import Role

ROLES = [Role.VIEWER, Role.OPERATOR, Role.ADMIN]


@pytest.fixture(params=["dashboard-api", "orchestration"])
def service(request: pytest.FixtureRequest) -> TestClient:
    client: TestClient = request.getfixturevalue("dashboard" if request.param == "dashboard-api" else "orchestration")
    return client


def framework_routes(app: FastAPI) -> set[str]:
    """The OpenAPI documents and their pages, which FastAPI adds as plain routes: public."""
    paths = {app.openapi_url, app.docs_url, app.redoc_url}
    if app.docs_url:
        paths.add(f"{app.docs_url}/oauth2-redirect")
    return {path for path in paths if path}


def flattened(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, BaseRoute]]:
    """Every route with its full path. FastAPI 0.165 includes a router as one lazy entry that
    keeps the router itself (``original_router``) and its prefix."""
    for route in routes:
        original = getattr(route, "original_router", None)
        if original is not None:
            yield from flattened(original.routes, prefix + route.include_context.prefix)  # type: ignore[attr-defined]
        else:
            yield prefix + getattr(route, "path", ""), route


def endpoints(app: FastAPI) -> list[tuple[str, str, Role | str]]:
    found = []
    for path, route in flattened(app.routes):
        if isinstance(route, APIRoute | APIWebSocketRoute):
            access = declared_access(route.dependant)
            assert access is not None, f"{path} declares no permission and no public marker"
            methods = sorted(route.methods - {"HEAD"}) if isinstance(route, APIRoute) else ["WEBSOCKET"]
            found += [(method, path, access) for method in methods]
        elif isinstance(route, Mount):
            assert route.path == "/static", f"unexpected mount {route.path}"
        else:
            assert isinstance(route, Route) and path in framework_routes(app), f"undeclared route {path}"
    return found


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "no-such-thing", path)


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
def test_every_route_declares_its_permission(backend: str, service: TestClient) -> None:
    routes = endpoints(service.app)  # type: ignore[arg-type]
    assert routes
    assert {access for _, _, access in routes} >= {"public", Role.VIEWER, Role.OPERATOR}


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
def test_each_role_gets_exactly_what_each_route_declares(service: TestClient, auth: dict[str, dict[str, str]]) -> None:
    for method, path, access in endpoints(service.app):  # type: ignore[arg-type]
        if method == "WEBSOCKET":
            continue  # authenticates by its own protocol: tests/api/test_ws.py
        url = concrete(path)
        anonymous = service.request(method, url, json={})
        if access == "public":
            assert anonymous.status_code not in (401, 403) or path == "/api/v1/auth/login", (method, path)
            continue
        assert isinstance(access, Role)
        assert anonymous.status_code == 401, (method, path, anonymous.status_code)
        assert anonymous.headers["WWW-Authenticate"] == "Bearer"
        for role in ROLES:
            response = service.request(method, url, json={}, headers=auth[role.value])
            if role.allows(access):
                assert response.status_code not in (401, 403), (method, path, role, response.text)
            else:
                assert response.status_code == 403, (method, path, role, response.status_code)
                assert access.value in response.json()["detail"]
