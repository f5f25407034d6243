"""spike_sdk: a Python client for SPIKE Nexus (spike-rs), over SPIFFE mTLS.

A ctypes binding of libspike_ffi, the C API of spike-rs. An installed package carries the
library inside it (``pip install`` builds it with cargo; a wheel needs no Rust);
``SPIKE_FFI_LIB`` points at another copy (e.g. ``target/release/libspike_ffi.so``)::

    from spike_sdk import Client, NotFoundError

    with Client() as spike:                     # SPIFFE_ENDPOINT_SOCKET, SPIKE_NEXUS_API_URL
        spike.put_secret("app/db", {"user": "admin", "pass": "s3cr3t"})
        print(spike.get_secret("app/db")["user"])

Every failure raises a subclass of ``SpikeError`` (see ``spike_sdk.errors`` for the tree).
Values returned to Python are ordinary ``str``/``bytes`` and cannot be zeroized; the
library's own copies are zeroized when freed. ``python -m spike_sdk --version`` prints the
package's and the library's versions.
"""

from . import _native, errors
from .client import Client, SecretMetadata, SecretVersionInfo
from .errors import *  # noqa: F403 (the exception classes, listed in errors.__all__)

#: The package's version; pyproject.toml reads it from here, and it matches the library's.
__version__ = "0.1.0"


def library_version() -> str:
    """The loaded libspike_ffi's version string, e.g. ``"spike-ffi/0.1.0"``.

    Loads the library if it is not loaded yet (``OSError`` if it cannot be found).
    """
    return _native.version()


def library_path() -> str:
    """Where the loaded libspike_ffi came from (loading it first, as ``library_version``)."""
    return _native.path()


__all__ = ["Client", "SecretMetadata", "SecretVersionInfo", "library_path", "library_version"]
__all__ += errors.__all__
