"""Exceptions mirroring ``spike_result`` codes: one class per code, grouped like the codes.

Every exception carries ``code`` (the ``spike_result`` number), ``message`` (the code's fixed
message) and ``detail`` (what failed and why). None carries a secret value. A class declares
its code in its ``class`` statement (``class NotFoundError(SpikeError, code=303)``), which also
enters it in ``BY_CODE``, the table the client raises from.

The tree::

    SpikeError
    +-- InvalidArgumentError (ValueError)       102
    |   +-- NullParameterError                  100
    |   +-- InvalidUtf8Error                    101
    +-- EndpointNotSetError                     200
    +-- WorkloadApiError                        201
    +-- TlsError                                202
    +-- RuntimeStartError                       203
    +-- NexusUnreachableError (ConnectionError) 300
    +-- NotReadyError                           301
    +-- ForbiddenError (PermissionError)        302
    +-- NotFoundError (LookupError)             303
    +-- BadRequestError                         304
    +-- ConflictError                           305
    +-- RateLimitedError                        306
    +-- ServerError                             307
    +-- ProtocolError                           308
    +-- PanicError                              900
    +-- UnexpectedError                         999
"""

from typing import Any, Dict, Optional, Type

__all__ = [
    "BadRequestError",
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
    "ServerError",
    "SpikeError",
    "TlsError",
    "UnexpectedError",
    "WorkloadApiError",
]

#: Each ``spike_result`` code (but 0, success) to the exception class raised for it.
BY_CODE: Dict[int, Type["SpikeError"]] = {}


class SpikeError(Exception):
    """Any failure reported by libspike_ffi (or a call on a closed ``Client``, code -1).

    ``message`` is the code's fixed message, ``detail`` what failed and why, ``code`` the
    ``spike_result`` number (the class's own unless given).
    """

    code: int = -1

    def __init_subclass__(cls, code: Optional[int] = None, **kwargs: Any) -> None:
        """Gives the subclass its ``code`` and enters it in ``BY_CODE`` (one class a code);
        a subclass without ``code=`` (e.g. an application's own) keeps its parent's."""
        super().__init_subclass__(**kwargs)
        if code is None:
            return
        if code in BY_CODE:
            raise TypeError(f"code {code} is already {BY_CODE[code].__name__}'s")
        cls.code = code
        BY_CODE[code] = cls

    def __init__(self, message: str, detail: str = "", code: int = -1) -> None:
        self.message = message
        self.detail = detail
        if code != -1:
            self.code = code
        super().__init__(f"{message}: {detail}" if detail and detail != message else message)


# 1xx: the caller's arguments. Nothing was sent; fix the call.
class InvalidArgumentError(SpikeError, ValueError, code=102):
    """An argument was refused before any I/O: an invalid secret path (e.g. with ``..``), no
    values to write, a NUL in a string, an unknown permission, a negative version, an ``http``
    URL, an empty JWT audience. ``detail`` says which and why."""


class NullParameterError(InvalidArgumentError, code=100):
    """A required pointer was NULL: a bug in this binding, never the caller's doing."""


class InvalidUtf8Error(InvalidArgumentError, code=101):
    """A string cannot be encoded as UTF-8 (a lone surrogate such as ``"\\udc80"``)."""


# 2xx: this process's environment. Fix the deployment, not the call.
class EndpointNotSetError(SpikeError, code=200):
    """No Workload API socket: ``SPIFFE_ENDPOINT_SOCKET`` is unset and ``Client(socket=...)``
    was not given."""


class WorkloadApiError(SpikeError, code=201):
    """The SPIFFE Workload API gave no usable SVID (an X509-SVID; a JWT-SVID in JWT mode) in
    time: the agent is down, the socket path is wrong, or this process is not registered."""


class TlsError(SpikeError, code=202):
    """The TLS configuration could not be built from the SVID and trust bundle."""


class RuntimeStartError(SpikeError, code=203):
    """The library's internal I/O runtime could not start (threads or file descriptors ran
    out)."""


# 3xx: what Nexus answered, or that it did not.
class NexusUnreachableError(SpikeError, ConnectionError, code=300):
    """Nexus could not be reached: connection refused, timeout, or a failed mTLS handshake
    (e.g. Nexus is not the SPIFFE ID expected). Idempotent calls were retried first."""


class NotReadyError(SpikeError, code=301):
    """Nexus has no root key yet (starting, or waiting for its Keepers); retry later."""


class ForbiddenError(SpikeError, PermissionError, code=302):
    """No policy lets this SPIFFE ID do that (or, in JWT mode, Nexus refused the token)."""


class NotFoundError(SpikeError, LookupError, code=303):
    """No such secret, version or policy (a deleted version counts as missing)."""


class BadRequestError(SpikeError, code=304):
    """Nexus rejected the request as malformed."""


class ConflictError(SpikeError, code=305):
    """A check-and-set write lost the race to another writer; read again and retry."""


class RateLimitedError(SpikeError, code=306):
    """Nexus asked this client to slow down; retry after a pause."""


class ServerError(SpikeError, code=307):
    """Nexus failed while handling the request (its log says why)."""


class ProtocolError(SpikeError, code=308):
    """Nexus's answer did not have the expected shape: a version mismatch, or not Nexus."""


# 9xx: the library itself.
class PanicError(SpikeError, code=900):
    """A bug in libspike_ffi: a Rust panic, stopped at the C boundary. Please report it."""


class UnexpectedError(SpikeError, code=999):
    """An error the library does not classify, or a code this package does not know."""
