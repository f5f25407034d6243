"""``Client``: blocking calls to SPIKE Nexus through libspike_ffi.

Each call releases the GIL while it waits for Nexus (ctypes does so for every foreign call),
so one ``Client`` may be shared between threads.
"""

import ctypes
import datetime
from ctypes import byref, c_char_p, c_uint64, c_void_p
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from . import _native
from .errors import BY_CODE, InvalidArgumentError, InvalidUtf8Error, SpikeError, UnexpectedError

PERMISSIONS = {"read": 1, "write": 1 << 1, "list": 1 << 2, "execute": 1 << 3, "super": 1 << 4}


def _check(code: int) -> None:
    if code == 0:
        return
    detail = _native.last_error()
    cls = BY_CODE.get(code, UnexpectedError)
    raise cls(_native.message(code), detail, code)


def _c(value: str, what: str) -> bytes:
    """A str as a C string argument: UTF-8, and no NUL (C would cut the string there)."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be str, not {type(value).__name__}")
    try:
        encoded = value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidUtf8Error(_native.message(101), f"{what} cannot be encoded as UTF-8: {e}")
    if b"\0" in encoded:
        raise InvalidArgumentError(_native.message(102), f"{what} contains a NUL character")
    return encoded


def _time(seconds: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)


def _versions(versions: Iterable[int]) -> Tuple["ctypes.Array[c_uint64]", int]:
    items = [int(v) for v in versions]
    if any(v < 0 for v in items):
        raise InvalidArgumentError(_native.message(102), "versions must be non-negative")
    array = (c_uint64 * len(items))(*items)
    return array, len(items)


@dataclass(frozen=True)
class SecretVersionInfo:
    """One kept version of a secret."""

    version: int
    created_time: datetime.datetime
    deleted_time: Optional[datetime.datetime]


@dataclass(frozen=True)
class SecretMetadata:
    """A secret's metadata (no values)."""

    current_version: int
    oldest_version: int
    max_versions: int
    created_time: datetime.datetime
    updated_time: datetime.datetime
    versions: Dict[int, SecretVersionInfo] = field(default_factory=dict)


class Client:
    """A client of SPIKE Nexus with this process's SPIFFE identity.

    With no arguments it is configured from SPIKE's environment variables
    (``SPIFFE_ENDPOINT_SOCKET``, ``SPIKE_NEXUS_API_URL``, ``SPIKE_TRUST_ROOT``); each argument
    overrides one. ``timeout`` (seconds) limits each request, ``svid_timeout`` (seconds) the
    wait for this process's X509-SVID; ``retries`` is the total number of attempts of an
    idempotent call. Use it as a context manager, or call ``close()``.

    ``jwt_audience`` switches to JWT-SVID mode, for Nexus's JWT listener
    (``SPIKE_NEXUS_JWT_TLS_PORT``): no client certificate, each request carries
    ``Authorization: Bearer <JWT-SVID>`` for that audience (Nexus's
    ``SPIKE_NEXUS_JWT_AUDIENCE``, by default ``"spike-nexus"``). Tokens come from the Workload
    API at ``socket`` and are renewed before they expire; Nexus is still authenticated by its
    X509-SVID. ``url`` then defaults to ``SPIKE_NEXUS_JWT_API_URL`` (``spike dev`` writes it
    to its env file). An empty audience raises ``InvalidArgumentError``.
    """

    def __init__(
        self,
        socket: Optional[str] = None,
        url: Optional[str] = None,
        *,
        nexus_id: Optional[str] = None,
        timeout: Optional[float] = None,
        svid_timeout: Optional[float] = None,
        retries: Optional[int] = None,
        jwt_audience: Optional[str] = None,
    ) -> None:
        self._lib = _native.lib()
        self._handle = c_void_p()
        builder = c_void_p()
        _check(self._lib.spike_client_builder_new(byref(builder)))
        try:
            if socket is not None:
                _check(self._lib.spike_client_builder_set_socket(builder, _c(socket, "socket")))
            if url is not None:
                _check(self._lib.spike_client_builder_set_url(builder, _c(url, "url")))
            if nexus_id is not None:
                _check(
                    self._lib.spike_client_builder_set_nexus_id(builder, _c(nexus_id, "nexus_id"))
                )
            if timeout is not None:
                ms = int(timeout * 1000)
                _check(self._lib.spike_client_builder_set_timeout_ms(builder, max(ms, 0)))
            if svid_timeout is not None:
                ms = int(svid_timeout * 1000)
                _check(self._lib.spike_client_builder_set_svid_timeout_ms(builder, max(ms, 0)))
            if retries is not None:
                _check(self._lib.spike_client_builder_set_retry_attempts(builder, max(retries, 0)))
            if jwt_audience is not None:
                audience = _c(jwt_audience, "jwt_audience")
                _check(self._lib.spike_client_builder_set_jwt_audience(builder, audience))
        except BaseException:
            self._lib.spike_client_builder_free(builder)
            raise
        # build() frees the builder whatever happens.
        _check(self._lib.spike_client_builder_build(builder, byref(self._handle)))

    # -- lifetime ---------------------------------------------------------------------------

    def close(self) -> None:
        """Closes connections and frees the client; further calls raise."""
        handle, self._handle = getattr(self, "_handle", None), c_void_p()
        if handle:
            self._lib.spike_client_free(handle)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def _h(self) -> c_void_p:
        if not self._handle:
            raise SpikeError("the client is closed")
        return self._handle

    # -- secrets ----------------------------------------------------------------------------

    def put_secret(self, path: str, values: Mapping[str, str]) -> None:
        """Writes a new version of the secret at ``path``."""
        items = list(values.items())
        keys = (c_char_p * len(items))(*[_c(k, "key") for k, _ in items])
        vals = (c_char_p * len(items))(*[_c(v, f"value of {k!r}") for k, v in items])
        n = len(items)
        _check(self._lib.spike_client_put_secret(self._h(), _c(path, "path"), keys, vals, n))

    def get_secret(self, path: str, version: Optional[int] = None) -> Dict[str, str]:
        """Reads the secret at ``path`` (the current version, or ``version``)."""
        if version is not None and version < 0:
            raise InvalidArgumentError(_native.message(102), "version must be non-negative")
        secret = c_void_p()
        c_path = _c(path, "path")
        _check(self._lib.spike_client_get_secret(self._h(), c_path, version or 0, byref(secret)))
        try:
            out = {}
            key, value = _native.SpikeStr(), _native.SpikeStr()
            for i in range(self._lib.spike_secret_len(secret)):
                _check(self._lib.spike_secret_get(secret, i, byref(key), byref(value)))
                out[key.to_bytes().decode("utf-8")] = value.to_bytes().decode("utf-8")
            return out
        finally:
            self._lib.spike_secret_free(secret)  # zeroizes the library's copy

    def list_secrets(self) -> List[str]:
        """The secret paths this identity may see."""
        return self._strings(self._lib.spike_client_list_secrets)

    def delete_secret(self, path: str, versions: Sequence[int] = ()) -> None:
        """Soft-deletes ``versions`` (none given: the current version)."""
        array, n = _versions(versions)
        _check(self._lib.spike_client_delete_secret(self._h(), _c(path, "path"), array, n))

    def undelete_secret(self, path: str, versions: Sequence[int] = ()) -> None:
        """Restores soft-deleted ``versions`` (none given: the latest deleted one)."""
        array, n = _versions(versions)
        _check(self._lib.spike_client_undelete_secret(self._h(), _c(path, "path"), array, n))

    def destroy_secret(self, path: str, versions: Sequence[int] = ()) -> None:
        """Permanently removes ``versions`` (none given: the current version)."""
        array, n = _versions(versions)
        _check(self._lib.spike_client_destroy_secret(self._h(), _c(path, "path"), array, n))

    def secret_metadata(self, path: str) -> SecretMetadata:
        """The versions and times of the secret at ``path``."""
        meta = c_void_p()
        _check(self._lib.spike_client_secret_metadata(self._h(), _c(path, "path"), byref(meta)))
        try:
            lib = self._lib
            versions = {}
            info = _native.SecretVersion()
            for i in range(lib.spike_secret_metadata_versions_len(meta)):
                _check(lib.spike_secret_metadata_version(meta, i, byref(info)))
                versions[info.version] = SecretVersionInfo(
                    version=info.version,
                    created_time=_time(info.created_time),
                    deleted_time=_time(info.deleted_time) if info.deleted else None,
                )
            return SecretMetadata(
                current_version=lib.spike_secret_metadata_current_version(meta),
                oldest_version=lib.spike_secret_metadata_oldest_version(meta),
                max_versions=lib.spike_secret_metadata_max_versions(meta),
                created_time=_time(lib.spike_secret_metadata_created_time(meta)),
                updated_time=_time(lib.spike_secret_metadata_updated_time(meta)),
                versions=versions,
            )
        finally:
            self._lib.spike_secret_metadata_free(meta)

    # -- policies ---------------------------------------------------------------------------

    def create_policy(
        self, name: str, spiffe_id_pattern: str, path_pattern: str, permissions: Iterable[str]
    ) -> None:
        """Creates or replaces policy ``name``: SPIFFE IDs matching ``spiffe_id_pattern`` get
        ``permissions`` ("read", "write", "list", "execute", "super") on paths matching
        ``path_pattern`` (both regular expressions over the whole string)."""
        bits = 0
        for p in permissions:
            if p not in PERMISSIONS:
                raise InvalidArgumentError(
                    _native.message(102),
                    f"unknown permission {p!r}; use one of {sorted(PERMISSIONS)}",
                )
            bits |= PERMISSIONS[p]
        _check(
            self._lib.spike_client_create_policy(
                self._h(),
                _c(name, "name"),
                _c(spiffe_id_pattern, "spiffe_id_pattern"),
                _c(path_pattern, "path_pattern"),
                bits,
            )
        )

    def list_policies(self) -> List[str]:
        """The names of all policies."""
        return self._strings(self._lib.spike_client_list_policies)

    def delete_policy(self, name: str) -> None:
        """Deletes policy ``name``."""
        _check(self._lib.spike_client_delete_policy(self._h(), _c(name, "name")))

    # -- cipher -----------------------------------------------------------------------------

    def encrypt(self, plaintext: bytes) -> bytes:
        """Encrypts with Nexus's key; returns SPIKE's framed ciphertext."""
        return self._bytes_call(self._lib.spike_client_encrypt, plaintext)

    def decrypt(self, ciphertext: bytes) -> bytes:
        """Decrypts a ciphertext made by ``encrypt`` (or ``spike cipher encrypt``)."""
        return self._bytes_call(self._lib.spike_client_decrypt, ciphertext)

    # -- helpers ----------------------------------------------------------------------------

    def _strings(self, call: Callable[..., int]) -> List[str]:
        lst = c_void_p()
        _check(call(self._h(), byref(lst)))
        try:
            s = _native.SpikeStr()
            out = []
            for i in range(self._lib.spike_str_list_len(lst)):
                _check(self._lib.spike_str_list_get(lst, i, byref(s)))
                out.append(s.to_bytes().decode("utf-8"))
            return out
        finally:
            self._lib.spike_str_list_free(lst)

    def _bytes_call(self, call: Callable[..., int], data: bytes) -> bytes:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"expected bytes, not {type(data).__name__}")
        data = bytes(data)
        buf = ctypes.create_string_buffer(data, len(data)) if data else None
        out = c_void_p()
        _check(call(self._h(), buf, len(data), byref(out)))
        try:
            n = self._lib.spike_bytes_len(out)
            return ctypes.string_at(self._lib.spike_bytes_data(out), n) if n else b""
        finally:
            self._lib.spike_bytes_free(out)  # zeroizes the library's copy
