"""Exceptions mirroring ``spike_result`` codes: one class per code, grouped like the codes.

Every exception carries ``code`` (the ``spike_result`` number), ``message`` (the code's fixed
message) and ``detail`` (what failed and why). None carries a secret value.
"""

from typing import Dict, Type


class SpikeError(Exception):
    """Any failure reported by libspike_ffi."""

    code = -1

    def __init__(self, message: str, detail: str = "", code: int = -1):
        self.message = message
        self.detail = detail
        if code != -1:
            self.code = code
        super().__init__(f"{message}: {detail}" if detail and detail != message else message)


# 1xx: the caller's arguments.
class InvalidArgumentError(SpikeError, ValueError):
    """An argument was refused (bad path, empty values, NUL in a string, ...)."""

    code = 102


class NullParameterError(InvalidArgumentError):
    """A required pointer was NULL (a bug in this binding if it ever happens)."""

    code = 100


class InvalidUtf8Error(InvalidArgumentError):
    """A string was not valid UTF-8 (e.g. a lone surrogate)."""

    code = 101


# 2xx: this process's environment.
class EndpointNotSetError(SpikeError):
    """No Workload API socket: SPIFFE_ENDPOINT_SOCKET is unset and none was given."""

    code = 200


class WorkloadApiError(SpikeError):
    """The SPIFFE Workload API gave no usable SVID (X509-SVID, or JWT-SVID in JWT mode)."""

    code = 201


class TlsError(SpikeError):
    """The TLS configuration could not be built."""

    code = 202


class RuntimeStartError(SpikeError):
    """The client's internal runtime could not be started."""

    code = 203


# 3xx: what Nexus answered.
class NexusUnreachableError(SpikeError, ConnectionError):
    """Nexus could not be reached (refused, timeout, failed mTLS handshake)."""

    code = 300


class NotReadyError(SpikeError):
    """Nexus has no root key yet; retry later."""

    code = 301


class ForbiddenError(SpikeError, PermissionError):
    """No policy lets this SPIFFE ID do that."""

    code = 302


class NotFoundError(SpikeError, LookupError):
    """No such secret, version or policy."""

    code = 303


class BadRequestError(SpikeError):
    """Nexus rejected the request as malformed."""

    code = 304


class ConflictError(SpikeError):
    """A check-and-set write lost the race."""

    code = 305


class RateLimitedError(SpikeError):
    """Nexus asked this client to slow down."""

    code = 306


class ServerError(SpikeError):
    """Nexus failed."""

    code = 307


class ProtocolError(SpikeError):
    """Nexus's answer did not have the expected shape."""

    code = 308


# 9xx: the library.
class PanicError(SpikeError):
    """A bug in libspike_ffi (a Rust panic stopped at the C boundary)."""

    code = 900


class UnexpectedError(SpikeError):
    """An error the library does not classify."""

    code = 999


BY_CODE: Dict[int, Type[SpikeError]] = {
    cls.code: cls
    for cls in [
        NullParameterError,
        InvalidUtf8Error,
        InvalidArgumentError,
        EndpointNotSetError,
        WorkloadApiError,
        TlsError,
        RuntimeStartError,
        NexusUnreachableError,
        NotReadyError,
        ForbiddenError,
        NotFoundError,
        BadRequestError,
        ConflictError,
        RateLimitedError,
        ServerError,
        ProtocolError,
        PanicError,
        UnexpectedError,
    ]
}
