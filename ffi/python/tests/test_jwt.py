"""spike_sdk in JWT-SVID mode (``Client(jwt_audience=...)``) against Nexus's JWT listener.

The Pilot superuser (mTLS, the ``spike`` fixture) writes secrets and grants the app workload
read on one prefix; the app then authenticates with a bearer JWT-SVID only.
"""

import os
import re

import pytest

from spike_sdk import Client, ForbiddenError, InvalidArgumentError, NexusUnreachableError

APP_ID = r"spiffe://spike\.ist/workload/app"
AUDIENCE = "spike-nexus"


@pytest.fixture
def granted(spike, path):
    """A secret the app may read (policy on its prefix) and one beside it that it may not."""
    prefix = path.rsplit("/", 1)[0]
    other = prefix + "-other/secret"
    spike.put_secret(path, {"pass": "jwt-from-python"})
    spike.put_secret(other, {"pass": "not for the app"})
    name = "py-jwt-" + prefix.split("/")[-1]
    spike.create_policy(name, "^" + APP_ID + "$", "^" + re.escape(prefix) + "/.*$", ["read"])
    try:
        yield path, other
    finally:
        spike.delete_policy(name)


def test_jwt_mode_reads_what_the_policy_grants_and_nothing_else(granted, app_socket, jwt_url):
    path, other = granted
    with Client(jwt_audience=AUDIENCE, url=jwt_url, socket=app_socket, retries=1) as app:
        assert app.get_secret(path) == {"pass": "jwt-from-python"}
        with pytest.raises(ForbiddenError) as denied:
            app.get_secret(other)
        assert denied.value.code == 302
        with pytest.raises(ForbiddenError):
            app.put_secret(path, {"pass": "overwritten"})
        # Several calls reuse the cached token, also from several threads.
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=4) as pool:
            values = list(pool.map(lambda _: app.get_secret(path)["pass"], range(16)))
        assert values == ["jwt-from-python"] * 16


def test_jwt_url_defaults_to_spike_nexus_jwt_api_url(granted, app_socket, jwt_url, monkeypatch):
    path, _ = granted
    monkeypatch.setenv("SPIKE_NEXUS_JWT_API_URL", jwt_url)
    with Client(socket=app_socket, jwt_audience=AUDIENCE, retries=1) as app:
        assert app.get_secret(path)["pass"] == "jwt-from-python"

    monkeypatch.delenv("SPIKE_NEXUS_JWT_API_URL")
    with pytest.raises(InvalidArgumentError) as e:
        Client(socket=app_socket, jwt_audience=AUDIENCE, retries=1)
    assert "SPIKE_NEXUS_JWT_API_URL" in e.value.detail


def test_tokens_for_another_audience_are_refused(granted, app_socket, jwt_url):
    path, _ = granted
    with Client(jwt_audience="someone-else", url=jwt_url, socket=app_socket, retries=1) as app:
        with pytest.raises(ForbiddenError):
            app.get_secret(path)


def test_the_mtls_listener_refuses_a_caller_without_a_certificate(granted, app_socket):
    path, _ = granted
    mtls_url = os.environ["SPIKE_NEXUS_API_URL"]
    with Client(jwt_audience=AUDIENCE, url=mtls_url, socket=app_socket, retries=1) as app:
        with pytest.raises(NexusUnreachableError):
            app.get_secret(path)


def test_bad_audiences_raise_before_any_io(app_socket, jwt_url):
    with pytest.raises(InvalidArgumentError) as e:
        Client(jwt_audience="", url=jwt_url, socket=app_socket)
    assert "audience" in e.value.detail
    with pytest.raises(InvalidArgumentError):
        Client(jwt_audience="   ", url=jwt_url, socket=app_socket)
    with pytest.raises(InvalidArgumentError):
        Client(jwt_audience="spike\0nexus", url=jwt_url, socket=app_socket)
    with pytest.raises(TypeError):
        Client(jwt_audience=b"spike-nexus", url=jwt_url, socket=app_socket)
