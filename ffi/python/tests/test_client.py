"""spike_sdk against a running Nexus: round trips, and each error class from Python."""

import builtins
import os
import re
import subprocess
import sys

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


def test_nexus_down_raises_unreachable(down_url):
    with Client(url=down_url, retries=1, timeout=5) as down:
        with pytest.raises(NexusUnreachableError) as e:
            down.list_secrets()
    assert down_url in e.value.detail
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
    with Client(retries=1) as scoped:
        scoped.put_secret(path, {"k": "v"})
    with pytest.raises(SpikeError, match="closed"):
        scoped.get_secret(path)


def test_exceptions_mirror_every_code_in_the_header():
    with open(HEADER, encoding="utf-8") as f:
        codes = dict(
            (int(n), name) for name, n in re.findall(r"SPIKE_RESULT_(\w+) = (\d+)", f.read())
        )
    assert codes.pop(0) == "OK"
    assert set(BY_CODE) == set(codes)
    for code, cls in BY_CODE.items():
        assert issubclass(cls, SpikeError) and cls.code == code


def test_the_documented_exception_tree_is_the_real_one():
    documented = re.findall(
        r"^ {4}([| ]*)\+-- (\w+)(?: \((\w+)\))? +(\d+)$", spike_sdk.errors.__doc__, re.M
    )
    assert len(documented) == len(BY_CODE)
    parents = [SpikeError]  # parents[d]: the latest class listed at depth d
    for indent, name, builtin, code in documented:
        del parents[len(indent) // 4 + 1 :]
        cls = getattr(spike_sdk, name)
        bases = (parents[-1],) + ((getattr(builtins, builtin),) if builtin else ())
        assert (cls.__bases__, cls.code) == (bases, int(code))
        parents.append(cls)


def test_an_application_subclass_keeps_its_parents_code():
    class AppNotFound(spike_sdk.NotFoundError):
        pass

    assert AppNotFound.code == 303 and BY_CODE[303] is spike_sdk.NotFoundError
    with pytest.raises(TypeError, match="303"):

        class Clash(SpikeError, code=303):
            pass


def test_every_public_name_has_a_docstring():
    public = [getattr(spike_sdk, n) for n in spike_sdk.__all__]
    public += [m for n, m in vars(Client).items() if callable(m) and not n.startswith("_")]
    assert [p for p in public if not (p.__doc__ or "").strip()] == []


def test_the_package_is_typed():
    assert os.path.isfile(os.path.join(os.path.dirname(spike_sdk.__file__), "py.typed"))


def test_library_version_matches_the_package():
    assert spike_sdk.library_version() == f"spike-ffi/{spike_sdk.__version__}"


def test_module_version_prints_the_package_and_the_library():
    run = subprocess.run(
        [sys.executable, "-m", "spike_sdk", "--version"], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    version = spike_sdk.__version__
    lib = os.environ["SPIKE_FFI_LIB"]
    assert run.stdout == f"spike-sdk {version} (spike-ffi/{version}, {lib})\n"


def test_module_version_says_why_without_a_library(tmp_path):
    missing = str(tmp_path / "libspike_ffi.so")
    run = subprocess.run(
        [sys.executable, "-m", "spike_sdk", "--version"],
        capture_output=True,
        text=True,
        env={**os.environ, "SPIKE_FFI_LIB": missing},
    )
    assert run.returncode == 1
    assert run.stdout == ""
    assert f"spike-sdk {spike_sdk.__version__}: cannot load libspike_ffi" in run.stderr
    assert missing in run.stderr
