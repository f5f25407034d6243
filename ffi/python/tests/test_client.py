"""spike_sdk against a running Nexus: round trips, and each error class from Python."""

import os
import re

import pytest

import spike_sdk
from spike_sdk import (
    Client,
    EndpointNotSetError,
    ForbiddenError,
    InvalidArgumentError,
    InvalidUtf8Error,
    NexusUnreachableError,
    NotFoundError,
    SpikeError,
    WorkloadApiError,
)
from spike_sdk.errors import BY_CODE

HEADER = os.path.join(os.path.dirname(__file__), "..", "..", "include", "spike.h")


def test_put_then_get_returns_the_values_written(spike, path):
    values = {"user": "admin", "pass": "s3cr3t", "unicode": "pässwörd ✓"}
    spike.put_secret(path, values)
    assert spike.get_secret(path) == values


def test_versions_delete_undelete_and_metadata(spike, path):
    spike.put_secret(path, {"v": "1"})
    spike.put_secret(path, {"v": "2"})
    assert spike.get_secret(path)["v"] == "2"
    assert spike.get_secret(path, version=1) == {"v": "1"}

    spike.delete_secret(path, [2])
    with pytest.raises(NotFoundError):
        spike.get_secret(path, version=2)
    meta = spike.secret_metadata(path)
    assert meta.versions[2].deleted_time is not None
    assert meta.versions[1].deleted_time is None

    spike.undelete_secret(path, [2])
    meta = spike.secret_metadata(path)
    assert meta.current_version == 2
    assert sorted(meta.versions) == [1, 2]
    assert meta.max_versions >= 2
    assert meta.created_time <= meta.updated_time
    assert path in spike.list_secrets()

    spike.destroy_secret(path, [1])
    with pytest.raises(NotFoundError):
        spike.get_secret(path, version=1)


def test_policies_grant_and_revoke_access(spike, app_socket, path):
    spike.put_secret(path, {"k": "v"})
    with Client(socket=app_socket, retries=1) as app:
        with pytest.raises(ForbiddenError) as denied:
            app.get_secret(path)
        assert "access denied" in str(denied.value)
        assert denied.value.code == 302
        assert isinstance(denied.value, PermissionError)

        prefix = path.rsplit("/", 1)[0]
        spike.create_policy(
            "py-app-read", r"spiffe://spike\.ist/workload/app", re.escape(prefix) + "/.*", ["read"]
        )
        try:
            assert "py-app-read" in spike.list_policies()
            assert app.get_secret(path) == {"k": "v"}
            with pytest.raises(ForbiddenError):
                app.put_secret(path, {"k": "x"})
        finally:
            spike.delete_policy("py-app-read")
        assert "py-app-read" not in spike.list_policies()
        with pytest.raises(ForbiddenError):
            app.get_secret(path)
        with pytest.raises(ForbiddenError):
            app.create_policy("grab", ".*", ".*", ["super"])


def test_one_client_serves_many_threads(spike, path):
    from concurrent.futures import ThreadPoolExecutor

    spike.put_secret(path, {"k": "v"})
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: spike.get_secret(path)["k"], range(64)))
    assert results == ["v"] * 64


def test_cipher_round_trips_bytes(spike):
    sealed = spike.encrypt(b"\x00attack at dawn\xff")
    assert b"attack" not in sealed
    assert spike.decrypt(sealed) == b"\x00attack at dawn\xff"
    assert spike.decrypt(spike.encrypt(b"")) == b""
    with pytest.raises(InvalidArgumentError):
        spike.decrypt(b"not a ciphertext")


def test_missing_secrets_raise_not_found(spike):
    with pytest.raises(NotFoundError) as missing:
        spike.get_secret("py/does/not/exist")
    assert missing.value.code == 303
    assert isinstance(missing.value, LookupError)


def test_nexus_down_raises_unreachable():
    url = os.environ.get("SPIKE_TEST_DOWN_URL")
    if not url:
        pytest.skip("SPIKE_TEST_DOWN_URL unset")
    with Client(url=url, retries=1, timeout=5) as down:
        with pytest.raises(NexusUnreachableError) as e:
            down.list_secrets()
    assert url in e.value.detail
    assert isinstance(e.value, ConnectionError)


def test_a_dead_workload_api_raises_workload_api_error():
    with pytest.raises(WorkloadApiError) as e:
        Client(socket="unix:///nonexistent/spike-py.sock", svid_timeout=0.3)
    assert "unix:///nonexistent/spike-py.sock" in e.value.detail


def test_no_endpoint_raises_endpoint_not_set(monkeypatch):
    monkeypatch.delenv("SPIFFE_ENDPOINT_SOCKET")
    with pytest.raises(EndpointNotSetError) as e:
        Client()
    assert "SPIFFE_ENDPOINT_SOCKET" in str(e.value)


def test_bad_arguments_raise_before_any_io(spike):
    with pytest.raises(InvalidArgumentError) as e:
        spike.put_secret("../escape", {"k": "v"})
    assert "secret path" in e.value.detail
    with pytest.raises(InvalidArgumentError):
        spike.put_secret("py/empty", {})
    with pytest.raises(InvalidArgumentError):
        spike.put_secret("py/nul", {"k": "a\0b"})
    with pytest.raises(InvalidUtf8Error):
        spike.put_secret("py/surrogate", {"k": "\udc80"})
    with pytest.raises(InvalidArgumentError):
        spike.create_policy("p", ".*", ".*", ["fly"])
    with pytest.raises(InvalidArgumentError):
        Client(url="http://plain.example", retries=1)
    with pytest.raises(TypeError):
        spike.put_secret("py/x", {"k": 1})


def test_closed_clients_refuse_calls(path):
    client = Client(retries=1)
    client.close()
    client.close()
    with pytest.raises(SpikeError):
        client.get_secret(path)


def test_exceptions_mirror_every_code_in_the_header():
    with open(HEADER, encoding="utf-8") as f:
        codes = dict(
            (int(n), name) for name, n in re.findall(r"SPIKE_RESULT_(\w+) = (\d+)", f.read())
        )
    assert codes.pop(0) == "OK"
    assert set(BY_CODE) == set(codes)
    for code, cls in BY_CODE.items():
        assert issubclass(cls, SpikeError) and cls.code == code


def test_library_version_matches_the_package():
    assert spike_sdk.library_version() == f"spike-ffi/{spike_sdk.__version__}"
