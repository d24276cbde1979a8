"""Fixtures of the HTTP tests (the runtime itself comes from tests/conftest.py)."""

from __future__ import annotations

import pytest

from tests.integration.fhir_http import FhirHttp


@pytest.fixture(scope="module")
def fhir(api_url: str) -> FhirHttp:
    return FhirHttp(api_url)
