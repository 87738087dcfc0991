"""schemathesis over the live API's OpenAPI document: for generated valid (positive) and invalid
(negative) requests to every operation, the API never answers 5xx, and every response matches the
documented status codes, content types, headers and schemas (problem+json included). The key is a
business-tier tenant's, so the limiter stays out of the way (its 429s are tested on their own)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import (content_type_conformance, negative_data_rejection, not_a_server_error,
                                 response_headers_conformance, response_schema_conformance, status_code_conformance)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance, negative_data_rejection]
EXAMPLES = 12


@pytest.fixture(scope="module")
def fuzz_key(platform):
    return platform.tenant("fuzz-co", "business")


@pytest.fixture(scope="module")
def api_schema(api):
    return schemathesis.openapi.from_url(f"{api.url}/openapi.json")


def _operations(schema):
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode), ids=lambda m: m.value)
def test_api_never_answers_5xx_and_matches_its_schema(api_schema, fuzz_key, mode):
    operations = _operations(api_schema)
    assert len(operations) >= 15
    fuzzed = 0
    for operation in operations:
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def run(case):
            case.call_and_validate(headers={"Authorization": f"Bearer {fuzz_key}"}, checks=CHECKS)

        try:
            run()
        except Unsatisfiable:
            # Only where nothing can be made invalid (an operation without parameters or body).
            assert mode is schemathesis.GenerationMode.NEGATIVE and not operation.body and not any(
                True for _ in operation.iter_parameters()), operation.label
            continue
        fuzzed += 1
    assert fuzzed >= (len(operations) - 3 if mode is schemathesis.GenerationMode.NEGATIVE else len(operations))
