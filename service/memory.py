"""glibc's allocator, reached through ctypes: the C library, and handing freed memory back."""

import ctypes
import ctypes.util
import functools


@functools.cache
def libc() -> ctypes.CDLL | None:
    """The C library, or None where there is none to load (then every tuning is a no-op)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def return_freed_memory() -> bool:
    """Give the free pages of every malloc arena back to the kernel (`malloc_trim(0)`).

    glibc keeps freed memory for reuse, all the more so after `api.runtime.keep_freed_memory`;
    after a burst of large decodes that would hold the process at its peak for good.
    False off glibc or when nothing was returned.
    """
    library = libc()
    try:
        return bool(library is not None and library.malloc_trim(0))
    except AttributeError:
        return False
