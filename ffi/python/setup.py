"""Two build hooks the declarative configuration in pyproject.toml cannot express.

libspike_ffi is a plain C library that ``spike_sdk._native`` loads with ctypes; it does not
use the CPython API. So:

- the file inside the package keeps cargo's name (``libspike_ffi.so`` / ``.dylib``) rather than
  a CPython extension-module name (``libspike_ffi.cpython-311-x86_64-linux-gnu.so``);
- the wheel is tagged ``py3-none-<platform>``: any Python 3 on that platform, not one CPython
  minor version.
"""

import os
import sys

from setuptools import setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools_rust import build_rust

# Must match spike_sdk._native.LIBRARY_FILE (which cannot be imported at build time).
LIBRARY_FILES = {"darwin": "libspike_ffi.dylib", "win32": "spike_ffi.dll"}


class BuildRustLibrary(build_rust):
    """setuptools-rust's build, with the library under its own name inside the package."""

    def get_dylib_ext_path(self, ext, target_fname):
        path = super().get_dylib_ext_path(ext, target_fname)
        return os.path.join(
            os.path.dirname(path), LIBRARY_FILES.get(sys.platform, "libspike_ffi.so")
        )


class PlatformWheel(bdist_wheel):
    """A wheel for one platform and every Python 3: ``py3-none-<platform>``."""

    def get_tag(self):
        _, _, platform = super().get_tag()
        return "py3", "none", platform


setup(cmdclass={"build_rust": BuildRustLibrary, "bdist_wheel": PlatformWheel})
