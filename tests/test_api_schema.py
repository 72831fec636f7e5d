"""schemathesis against the app's own OpenAPI schema: every built-in check, no failure.

Covers the chat API (``/v1/*``, ``/healthz``, ``/readyz``); the admin and web pages are tested
by their own modules. Both answer modes are live (the llm mode talks to the scripted server
process), API keys and the rate limit are off, so every request the schema allows must be
answered as documented. The example count is kept small for CI time on 2 cores.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from nenqa.settings import Settings
from server.app import create_app

pytestmark = pytest.mark.slow

# The schema is read at import; the loaded service is attached by the fixture below (pytest 9
# and schemathesis' lazy ``from_fixture`` do not work together).
APP = create_app(Settings(api_keys=[], rate_limit_per_minute=0), load_on_startup=False)
CHAT_API = r"^/(?:v1/|healthz$|readyz$)"
schema = schemathesis.openapi.from_asgi("/openapi.json", APP).include(path_regex=CHAT_API)


@pytest.fixture(scope="module", autouse=True)
def loaded_service(llm_service, scripted_llm):
    scripted_llm.set_rules([{"when": "", "reply": "INSUFFICIENT_EVIDENCE"}])
    APP.state.service = llm_service
    yield
    APP.state.service = None


@schema.parametrize()
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_every_operation_conforms_to_its_schema(case):
    case.call_and_validate()
