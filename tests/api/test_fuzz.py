"""Schema fuzzing: requests generated from our own OpenAPI document never get a 5xx."""

import pytest
from hypothesis import HealthCheck, given, settings

schemathesis = pytest.importorskip("schemathesis")

EXAMPLES_PER_OPERATION = 12
OPERATIONS = [
    "GET /healthz",
    "GET /readyz",
    "GET /v1/models",
    "POST /v1/captions",
    "POST /v1/vqa",
    "POST /v1/labels",
]


@pytest.fixture(scope="module")
def api_schema(server):
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json")


def test_the_schema_lists_the_fuzzed_operations(api_schema) -> None:
    listed = {op.ok().label for op in api_schema.get_all_operations()}
    assert set(OPERATIONS) <= listed


@pytest.mark.parametrize("label", OPERATIONS)
def test_no_generated_request_gets_a_server_error(api_schema, label) -> None:
    method, path = label.split(" ")
    operation = api_schema[path][method]
    statuses = []

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def call(case) -> None:
        response = case.call(timeout=30)
        assert response.status_code < 500, f"{case.as_curl_command()}\n{response.text}"
        if response.status_code >= 400:
            assert response.json()["error"]["message"]
        statuses.append(response.status_code)

    call()
    assert statuses  # hypothesis really sent requests
