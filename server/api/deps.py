"""Dependencies of the routes: the loaded service, the API and admin key checks, the rate limit."""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.params import Depends as DependsParam
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from nenqa.settings import Settings
from server.errors import ForbiddenError, ServiceNotReadyError, UnauthorizedError
from server.state import ServiceState

bearer_scheme = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="the API key")
admin_key_header = APIKeyHeader(name="X-Admin-Key", auto_error=False, description="admin key")
admin_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <admin key>")


def get_service(request: Request) -> ServiceState:
    """The loaded service; 503 while the index and model load, or if loading failed."""
    service = getattr(request.app.state, "service", None)
    if service is not None:
        return service
    problem = getattr(request.app.state, "load_error", None)
    if problem:
        raise ServiceNotReadyError(f"the service failed to start: {problem}", loading=False)
    waiting = getattr(request.app.state, "load_waiting", None)  # e.g. for a Chroma server
    message = waiting or "the index and model are still loading; retry shortly"
    raise ServiceNotReadyError(message, loading=True)


ServiceDep = Annotated[ServiceState, Depends(get_service)]


def get_app_settings(request: Request) -> Settings:
    """The settings the app was created with (HTTP limits, default mode)."""
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]


def require_api_key(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
    header_key: Annotated[str | None, Security(api_key_header)],
) -> str:
    """The request's valid API key; 401 without one (only installed when keys are set)."""
    key = request.app.state.api_keys.verify(bearer.credentials if bearer else None, header_key)
    request.state.client_key = f"key:{key}"
    return key


def enforce_rate_limit(request: Request) -> None:
    """Count the request against its key's (or address's) bucket; 429 when it is empty."""
    client = getattr(request.state, "client_key", None)
    if client is None:
        client = f"addr:{request.client.host if request.client else 'unknown'}"
    request.app.state.rate_limiter.check(client)


def api_dependencies(keys_required: bool) -> list[DependsParam]:
    """What every ``/v1`` route runs first: the key check (when keys are set), the limit."""
    dependencies = [Depends(require_api_key)] if keys_required else []
    return [*dependencies, Depends(enforce_rate_limit)]


def require_admin_key(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(admin_bearer)],
    header_key: Annotated[str | None, Security(admin_key_header)],
) -> None:
    """Let only ``NENQA_ADMIN_KEYS`` through: 401 without a key, 403 with another (or none set)."""
    presented = header_key or (bearer.credentials if bearer else None)
    if not presented:
        raise UnauthorizedError(
            "the admin endpoints need an admin key: send 'X-Admin-Key: <key>' or "
            "'Authorization: Bearer <key>'"
        )
    keys = [k for k in request.app.state.settings.admin_keys if k]
    if not keys:
        raise ForbiddenError("the admin endpoints are disabled: set NENQA_ADMIN_KEYS")
    digest = hashlib.sha256(presented.encode()).digest()
    # Digests compared in constant time, so the response time says nothing about a key.
    known = (hashlib.sha256(k.encode()).digest() for k in keys)
    if not any(hmac.compare_digest(digest, k) for k in known):
        raise ForbiddenError("this key is not an admin key")


AdminKeyDep = Annotated[None, Depends(require_admin_key)]
