"""Progress for long steps: nested, timed steps on stderr, so users see where the minutes go."""

import contextlib
import sys
import time
from collections.abc import Iterator

_depth = 0
quiet = False


def info(message: str) -> None:
    if not quiet:
        print(f"{'  ' * _depth}{message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def step(title: str) -> Iterator[None]:
    """Log `title`, run the block indented one level, then log how long it took."""
    global _depth
    info(f"‣ {title}")
    start = time.monotonic()
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
    info(f"  done in {time.monotonic() - start:.1f}s")
