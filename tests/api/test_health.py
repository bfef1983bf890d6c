from __future__ import annotations

from fastapi.testclient import TestClient


def test_every_service_answers_health_in_one_shape(dashboard: TestClient, orchestration: TestClient) -> None:
    for client, name in ((dashboard, "dashboard-api"), (orchestration, "orchestration")):
        response = client.get("/health")
        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "ok"
        assert body["version"] == "v1.0.1"
        assert body["service"] == name


def test_metrics_are_prometheus_text_with_route_templates(
    dashboard: TestClient, auth: dict[str, dict[str, str]]
) -> None:
    dashboard.get("/api/v1/agents/dqn", headers=auth["viewer"])
    dashboard.get("/api/v1/agents/nope", headers=auth["viewer"])
    text = dashboard.get("/metrics").text
    assert "# TYPE http_requests_total counter" in text
    assert 'route="/api/v1/agents/{agent_id}"' in text
    assert 'route="/api/v1/agents/nope"' not in text
    assert 'version="v1.0.1"' in text


def test_openapi_docs_are_served(dashboard: TestClient, orchestration: TestClient) -> None:
    assert dashboard.get("/docs").status_code == 200
    paths = orchestration.get("/openapi.json").json()["paths"]
    assert "/api/v1/train" in paths
    assert "/api/v1/evaluations" in dashboard.get("/openapi.json").json()["paths"]
