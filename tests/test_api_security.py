"""API keys, the per-key rate limit and CORS."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.errors import RateLimitedError
from server.security import RateLimiter

QUESTION = {"question": "SPINET研究中兰瑞肽组的治疗失败时间是多少？"}


def test_the_bucket_refills_with_time():
    now = [0.0]
    limiter = RateLimiter(2, clock=lambda: now[0])
    limiter.check("a")
    limiter.check("a")
    with pytest.raises(RateLimitedError) as error:
        limiter.check("a")
    assert error.value.retry_after_s == 30
    limiter.check("b")  # another key has its own bucket
    now[0] = 30.0
    limiter.check("a")


@pytest.mark.slow
def test_without_a_valid_key_requests_are_refused(service):
    settings = service.settings.model_copy(update={"api_keys": ["k-alpha", "k-beta"]})
    with TestClient(create_app(settings, service=service)) as client:
        missing = client.get("/v1/references/7")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == "Bearer"
        assert "API key" in missing.json()["detail"]
        wrong = client.get("/v1/references/7", headers={"Authorization": "Bearer k-gamma"})
        assert wrong.status_code == 401 and "not valid" in wrong.json()["detail"]
        bearer = client.get("/v1/references/7", headers={"Authorization": "Bearer k-alpha"})
        assert bearer.status_code == 200
        header = client.post("/v1/chat", json=QUESTION, headers={"X-API-Key": "k-beta"})
        assert header.status_code == 200
        assert client.get("/healthz").status_code == 200  # probes need no key
        schemes = client.get("/openapi.json").json()["components"]["securitySchemes"]
        assert {"HTTPBearer", "APIKeyHeader"} == set(schemes)


@pytest.mark.slow
def test_each_key_is_rate_limited_with_retry_after(service):
    settings = service.settings.model_copy(
        update={"api_keys": ["k-alpha", "k-beta"], "rate_limit_per_minute": 2}
    )
    with TestClient(create_app(settings, service=service)) as client:
        alpha = {"Authorization": "Bearer k-alpha"}
        assert [client.get("/v1/trials/spinet", headers=alpha).status_code for _ in range(2)] == [
            200,
            200,
        ]
        limited = client.get("/v1/trials/spinet", headers=alpha)
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        assert "2 requests per minute" in limited.json()["detail"]
        beta = client.get("/v1/trials/spinet", headers={"X-API-Key": "k-beta"})
        assert beta.status_code == 200


@pytest.mark.slow
def test_cors_allows_only_the_configured_widget_origins(service):
    settings = service.settings.model_copy(update={"cors_origins": ["https://widget.example"]})
    with TestClient(create_app(settings, service=service)) as client:
        allowed = client.post(
            "/v1/chat", json=QUESTION, headers={"Origin": "https://widget.example"}
        )
        assert allowed.headers["access-control-allow-origin"] == "https://widget.example"
        other = client.post("/v1/chat", json=QUESTION, headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
        preflight = client.options(
            "/v1/chat",
            headers={
                "Origin": "https://widget.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-api-key",
            },
        )
        assert preflight.status_code == 200
        assert "x-api-key" in preflight.headers["access-control-allow-headers"].lower()
