"""The OpenAPI document tells the truth: generated requests (schemathesis) to every
operation but the endless event feeds get no server error, only documented statuses,
and answers that match their declared schemas and content types.

A bounded pass (a few examples per operation); the full run of 20,000 and more requests
is `python -m benchmarks.api_contract` (docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.service import Service, bearer, serve, service_settings

# Streams that never end by themselves: a generated request would wait on them forever.
ENDLESS = ("/api/v1/events", "/api/v1/jobs/{job_id}/events")


@pytest.fixture(scope="module")
def contract_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    # schemathesis calls the app as the host "testserver".
    settings_ = service_settings(tmp_path_factory.mktemp("contract"), allow_anonymous=False,
                                 allowed_hosts=["testserver"])
    with serve(settings_) as service:
        yield service


@pytest.fixture(scope="module")
def api(contract_service: Service) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", contract_service.app)


schema = schemathesis.pytest.from_fixture("api")


@pytest.fixture(scope="module")
def key(contract_service: Service) -> str:
    return contract_service.create_key("contract", max_priority=100)


@schema.exclude(path=list(ENDLESS)).parametrize()
@settings(max_examples=8, deadline=None,
          suppress_health_check=list(HealthCheck))
def test_every_operation_keeps_its_contract(case: Any, key: str) -> None:
    case.call_and_validate(headers=bearer(key), checks=[
        not_a_server_error, status_code_conformance, content_type_conformance,
        response_schema_conformance, response_headers_conformance])
