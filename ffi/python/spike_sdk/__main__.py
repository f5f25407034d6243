"""``python -m spike_sdk --version``: the package's version and the library it loads.

It prints one line, ``spike-sdk 0.1.0 (spike-ffi/0.1.0, /path/to/libspike_ffi.so)``: the
library's own version string and the file it came from (the package's copy, ``$SPIKE_FFI_LIB``
or the system's). Exit status 1, with the reason on stderr, when no library can be loaded.
"""

import argparse
import sys
from typing import List, Optional

from . import __version__, library_path, library_version


def main(argv: Optional[List[str]] = None) -> int:
    """Runs the command line; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m spike_sdk",
        description="spike-sdk: a Python client for SPIKE Nexus over libspike_ffi.",
    )
    parser.add_argument(
        "--version",
        action="store_true",
        help="print the package's version and the loaded libspike_ffi's version and file",
    )
    args = parser.parse_args(argv)
    if not args.version:
        parser.print_help()
        return 0
    try:
        library = f"{library_version()}, {library_path()}"
    except OSError as e:
        print(f"spike-sdk {__version__}: {e}", file=sys.stderr)
        return 1
    print(f"spike-sdk {__version__} ({library})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
