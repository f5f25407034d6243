"""Fixtures for the spike_sdk tests.

They need a running agent and Nexus; `cargo test -p spike-ffi --test python` starts both
in-process and sets:

- SPIKE_FFI_LIB: the built libspike_ffi shared library;
- SPIFFE_ENDPOINT_SOCKET: a Workload API socket with the Pilot superuser identity;
- SPIKE_NEXUS_API_URL: Nexus's URL;
- SPIKE_TEST_APP_SOCKET: a socket whose workload (spiffe://spike.ist/workload/app) has no
  policy (everything is forbidden);
- SPIKE_NEXUS_JWT_API_URL: Nexus's JWT-SVID listener;
- SPIKE_TEST_DOWN_URL: an https URL where nothing listens.

Against another system (e.g. `spike dev`), set the same variables by hand: `spike dev`'s env
file exports SPIFFE_ENDPOINT_SOCKET, SPIKE_NEXUS_API_URL and SPIKE_NEXUS_JWT_API_URL, and
`spike dev --workload app=spiffe://spike.ist/workload/app` gives the app socket
(DIR/agent/app.sock).
"""

import os
import uuid

import pytest

REQUIRED = ["SPIKE_FFI_LIB", "SPIFFE_ENDPOINT_SOCKET", "SPIKE_NEXUS_API_URL"]


def pytest_collection_modifyitems(config, items):
    missing = [v for v in REQUIRED if not os.environ.get(v)]
    if missing:
        skip = pytest.mark.skip(
            reason=f"{', '.join(missing)} unset: run `cargo test -p spike-ffi --test python`"
        )
        for item in items:
            item.add_marker(skip)


@pytest.fixture
def spike():
    from spike_sdk import Client

    with Client(retries=1) as client:
        yield client


def _env_or_skip(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.skip(f"{name} unset")
    return value


@pytest.fixture
def app_socket():
    return _env_or_skip("SPIKE_TEST_APP_SOCKET")


@pytest.fixture
def jwt_url():
    return _env_or_skip("SPIKE_NEXUS_JWT_API_URL")


@pytest.fixture
def down_url():
    return _env_or_skip("SPIKE_TEST_DOWN_URL")


@pytest.fixture
def path():
    """A fresh secret path per test, so tests do not see each other's versions."""
    return f"py/{uuid.uuid4().hex[:12]}/secret"
