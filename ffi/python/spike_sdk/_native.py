"""ctypes declarations for libspike_ffi (see ffi/include/spike.h), loaded on first use.

The library is found at ``$SPIKE_FFI_LIB`` (a file path; when set, nowhere else), else inside
this package (where ``pip install`` and the wheel put it), else by the system's library search
(``ctypes.util.find_library``: ``libspike_ffi``, or ``libspike`` as cargo-c installs it).
"""

import ctypes
import ctypes.util
import os
import sys
import threading
from ctypes import POINTER, c_bool, c_char, c_char_p, c_int64, c_size_t, c_uint, c_uint32
from ctypes import c_uint64, c_void_p
from typing import Iterator, Optional

RESULT = c_uint32  # spike_result is a uint32_t in C


class SpikeStr(ctypes.Structure):
    """``spike_str``: a borrowed view (data, len) into an object owned by the library."""

    _fields_ = [("data", POINTER(c_char)), ("len", c_size_t)]

    def to_bytes(self) -> bytes:
        """A copy of the viewed bytes (the library's object must still be alive)."""
        return ctypes.string_at(self.data, self.len) if self.len else b""


class SecretVersion(ctypes.Structure):
    """``spike_secret_version``."""

    _fields_ = [
        ("version", c_uint64),
        ("created_time", c_int64),
        ("deleted_time", c_int64),
        ("deleted", c_bool),
    ]


# Opaque handles are plain void pointers on this side.
HANDLE = c_void_p
OUT_HANDLE = POINTER(c_void_p)
STR_ARRAY = POINTER(c_char_p)

_PROTOTYPES = {
    "spike_version": (c_char_p, []),
    "spike_error_message": (None, [c_uint, c_char_p, c_size_t, POINTER(c_size_t)]),
    "spike_last_error": (None, [c_char_p, c_size_t, POINTER(c_size_t)]),
    # clients
    "spike_client_new_from_env": (RESULT, [OUT_HANDLE]),
    "spike_client_new": (RESULT, [c_char_p, c_char_p, OUT_HANDLE]),
    "spike_client_free": (None, [HANDLE]),
    "spike_client_builder_new": (RESULT, [OUT_HANDLE]),
    "spike_client_builder_set_socket": (RESULT, [HANDLE, c_char_p]),
    "spike_client_builder_set_url": (RESULT, [HANDLE, c_char_p]),
    "spike_client_builder_set_nexus_id": (RESULT, [HANDLE, c_char_p]),
    "spike_client_builder_set_timeout_ms": (RESULT, [HANDLE, c_uint64]),
    "spike_client_builder_set_svid_timeout_ms": (RESULT, [HANDLE, c_uint64]),
    "spike_client_builder_set_retry_attempts": (RESULT, [HANDLE, c_uint32]),
    "spike_client_builder_set_jwt_audience": (RESULT, [HANDLE, c_char_p]),
    "spike_client_builder_build": (RESULT, [HANDLE, OUT_HANDLE]),
    "spike_client_builder_free": (None, [HANDLE]),
    # secrets
    "spike_client_put_secret": (RESULT, [HANDLE, c_char_p, STR_ARRAY, STR_ARRAY, c_size_t]),
    "spike_client_get_secret": (RESULT, [HANDLE, c_char_p, c_uint64, OUT_HANDLE]),
    "spike_secret_len": (c_size_t, [HANDLE]),
    "spike_secret_get": (RESULT, [HANDLE, c_size_t, POINTER(SpikeStr), POINTER(SpikeStr)]),
    "spike_secret_free": (None, [HANDLE]),
    "spike_client_list_secrets": (RESULT, [HANDLE, OUT_HANDLE]),
    "spike_client_delete_secret": (RESULT, [HANDLE, c_char_p, POINTER(c_uint64), c_size_t]),
    "spike_client_undelete_secret": (RESULT, [HANDLE, c_char_p, POINTER(c_uint64), c_size_t]),
    "spike_client_destroy_secret": (RESULT, [HANDLE, c_char_p, POINTER(c_uint64), c_size_t]),
    "spike_client_secret_metadata": (RESULT, [HANDLE, c_char_p, OUT_HANDLE]),
    "spike_secret_metadata_current_version": (c_uint64, [HANDLE]),
    "spike_secret_metadata_oldest_version": (c_uint64, [HANDLE]),
    "spike_secret_metadata_max_versions": (c_uint64, [HANDLE]),
    "spike_secret_metadata_created_time": (c_int64, [HANDLE]),
    "spike_secret_metadata_updated_time": (c_int64, [HANDLE]),
    "spike_secret_metadata_versions_len": (c_size_t, [HANDLE]),
    "spike_secret_metadata_version": (RESULT, [HANDLE, c_size_t, POINTER(SecretVersion)]),
    "spike_secret_metadata_free": (None, [HANDLE]),
    # lists
    "spike_str_list_len": (c_size_t, [HANDLE]),
    "spike_str_list_get": (RESULT, [HANDLE, c_size_t, POINTER(SpikeStr)]),
    "spike_str_list_free": (None, [HANDLE]),
    # policies
    "spike_client_create_policy": (RESULT, [HANDLE, c_char_p, c_char_p, c_char_p, c_uint32]),
    "spike_client_list_policies": (RESULT, [HANDLE, OUT_HANDLE]),
    "spike_client_delete_policy": (RESULT, [HANDLE, c_char_p]),
    # cipher
    "spike_client_encrypt": (RESULT, [HANDLE, c_void_p, c_size_t, OUT_HANDLE]),
    "spike_client_decrypt": (RESULT, [HANDLE, c_void_p, c_size_t, OUT_HANDLE]),
    "spike_bytes_data": (c_void_p, [HANDLE]),
    "spike_bytes_len": (c_size_t, [HANDLE]),
    "spike_bytes_free": (None, [HANDLE]),
}

#: The library's file name on this platform, as cargo builds it and the package carries it.
if sys.platform == "darwin":
    LIBRARY_FILE = "libspike_ffi.dylib"
elif sys.platform == "win32":
    LIBRARY_FILE = "spike_ffi.dll"
else:
    LIBRARY_FILE = "libspike_ffi.so"

_lock = threading.Lock()
_lib: Optional[ctypes.CDLL] = None
_path = ""


def _candidates() -> Iterator[str]:
    """Where to look, in order: ``$SPIKE_FFI_LIB`` alone if set; else the package's own copy,
    then the system's search for ``spike_ffi`` (cargo's name) and ``spike`` (cargo-c's)."""
    explicit = os.environ.get("SPIKE_FFI_LIB")
    if explicit:
        yield explicit
        return
    vendored = os.path.join(os.path.dirname(os.path.abspath(__file__)), LIBRARY_FILE)
    if os.path.exists(vendored):
        yield vendored
    for name in ("spike_ffi", "spike"):
        found = ctypes.util.find_library(name)
        if found:
            yield found


def lib() -> ctypes.CDLL:
    """The loaded library with every prototype declared (loaded once, thread-safely).

    Raises ``OSError`` naming every place tried when none holds a usable library.
    """
    global _lib, _path
    with _lock:
        if _lib is not None:
            return _lib
        errors = []
        for path in _candidates():
            try:
                loaded = ctypes.CDLL(path)
                for name, (restype, argtypes) in _PROTOTYPES.items():
                    fn = getattr(loaded, name)
                    fn.restype = restype
                    fn.argtypes = argtypes
                break
            except (OSError, AttributeError) as e:  # AttributeError: another library's file
                errors.append(f"{path}: {e}")
        else:
            raise OSError(
                "cannot load libspike_ffi: install spike-sdk from a wheel or with `pip install "
                "./ffi/python` (builds it with cargo), or build it (`cargo build -p spike-ffi "
                "--release`) and set SPIKE_FFI_LIB to the file"
                + (f" (tried {'; '.join(errors)})" if errors else " (none found)")
            )
        _lib, _path = loaded, path
        return _lib


def version() -> str:
    """``spike_version``: the library's version string, e.g. ``"spike-ffi/0.1.0"``."""
    raw: bytes = lib().spike_version()
    return raw.decode("utf-8")


def path() -> str:
    """The file the library was loaded from, or the name the system search resolved."""
    lib()
    return _path


def message(code: int) -> str:
    """``spike_error_message``: the fixed message of a code."""
    buf = ctypes.create_string_buffer(512)
    lib().spike_error_message(code, buf, len(buf), None)
    return buf.value.decode("utf-8", "replace")


def last_error() -> str:
    """``spike_last_error``: the detail of this thread's latest failure."""
    buf = ctypes.create_string_buffer(4096)
    lib().spike_last_error(buf, len(buf), None)
    return buf.value.decode("utf-8", "replace")
