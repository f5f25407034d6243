"""spike_sdk: a Python client for SPIKE Nexus (spike-rs), over SPIFFE mTLS.

A thin ctypes binding of libspike_ffi, the C API of spike-rs; nothing to compile beyond that
library. Point ``SPIKE_FFI_LIB`` at it (e.g. ``target/release/libspike_ffi.so``)::

    from spike_sdk import Client, NotFoundError

    with Client() as spike:                     # SPIFFE_ENDPOINT_SOCKET, SPIKE_NEXUS_API_URL
        spike.put_secret("app/db", {"user": "admin", "pass": "s3cr3t"})
        print(spike.get_secret("app/db")["user"])

Values returned to Python are ordinary ``str``/``bytes`` and cannot be zeroized; the
library's own copies are zeroized when freed.
"""

from . import _native
from .client import Client, SecretMetadata, SecretVersionInfo
from .errors import (
    BadRequestError,
    ConflictError,
    EndpointNotSetError,
    ForbiddenError,
    InvalidArgumentError,
    InvalidUtf8Error,
    NexusUnreachableError,
    NotFoundError,
    NotReadyError,
    NullParameterError,
    PanicError,
    ProtocolError,
    RateLimitedError,
    RuntimeStartError,
    ServerError,
    SpikeError,
    TlsError,
    UnexpectedError,
    WorkloadApiError,
)

__version__ = "0.1.0"


def library_version() -> str:
    """The loaded libspike_ffi's version string, e.g. ``"spike-ffi/0.1.0"``."""
    return _native.lib().spike_version().decode("utf-8")


__all__ = [
    "BadRequestError",
    "Client",
    "ConflictError",
    "EndpointNotSetError",
    "ForbiddenError",
    "InvalidArgumentError",
    "InvalidUtf8Error",
    "NexusUnreachableError",
    "NotFoundError",
    "NotReadyError",
    "NullParameterError",
    "PanicError",
    "ProtocolError",
    "RateLimitedError",
    "RuntimeStartError",
    "SecretMetadata",
    "SecretVersionInfo",
    "ServerError",
    "SpikeError",
    "TlsError",
    "UnexpectedError",
    "WorkloadApiError",
    "library_version",
]
