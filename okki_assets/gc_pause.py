"""``gc_paused``: the cyclic garbage collector paused over work that builds many acyclic objects."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many acyclic objects.

    Allocating hundreds of thousands of containers triggers collections that walk the growing
    heap again and again (measured: a third to half of the time of cleaning and mapping).
    Nothing built here forms a reference cycle, so plain reference counting frees it all; the
    collector resumes afterwards. Nesting is safe (only the outermost call re-enables it).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
