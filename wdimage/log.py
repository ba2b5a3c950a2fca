"""Progress for long steps: nested, timed steps on stderr, so users see where the minutes go."""

import contextlib
import sys
import threading
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


# A wait says what it waits for and for how long at most, then every HEARTBEAT seconds how long it has waited:
# no silent stretch over 10 s (issue 28). Plain lines: they read the same in a terminal, a pipe and a CI log.
HEARTBEAT = 5.0


@contextlib.contextmanager
def waiting(what: str, at_most: float | None = None, heartbeat: float | None = None) -> Iterator[None]:
    """Say `waiting for WHAT (at most N s)`, run the block, and while it runs say every `heartbeat` seconds how
    long it has been. The heartbeat is a daemon thread; it stops (and says nothing more) when the block ends."""
    limit = f" (at most {at_most:.0f}s)" if at_most is not None else ""
    info(f"… waiting for {what}{limit}")
    every = HEARTBEAT if heartbeat is None else heartbeat
    done = threading.Event()
    start = time.monotonic()
    depth = _depth

    def beat() -> None:
        while not done.wait(every):
            if not quiet:
                print(f"{'  ' * depth}  still waiting for {what}: {time.monotonic() - start:.0f}s"
                      f"{f' of at most {at_most:.0f}s' if at_most is not None else ''}", file=sys.stderr, flush=True)

    thread = threading.Thread(target=beat, name=f"waiting: {what}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


class Progress:
    """A count a person waits on (the audit's domains): a bar redrawn in place on a terminal, else one plain line
    per item (pipes, CI logs), nothing with -q. `advance` may be called from any thread."""

    BAR = 24

    def __init__(self, total: int, what: str):
        self.total, self.what, self.count = total, what, 0
        self.indent = "  " * _depth
        self.tty = sys.stderr.isatty()
        self._lock = threading.Lock()

    def advance(self, label: str) -> None:
        with self._lock:
            self.count += 1
            if quiet:
                return
            if not self.tty:
                print(f"{self.indent}{self.count}/{self.total} {self.what}: {label}", file=sys.stderr, flush=True)
                return
            filled = round(self.BAR * self.count / max(1, self.total))
            end = "\n" if self.count >= self.total else ""
            sys.stderr.write(f"\r\x1b[K{self.indent}[{'#' * filled}{'.' * (self.BAR - filled)}] "
                             f"{self.count}/{self.total} {self.what}  {label[:60]}{end}")
            sys.stderr.flush()

    def close(self) -> None:
        """End a bar that stopped short (an error) on its own line."""
        with self._lock:
            if self.tty and not quiet and 0 < self.count < self.total:
                sys.stderr.write("\n")
                sys.stderr.flush()


@contextlib.contextmanager
def progress(total: int, what: str) -> Iterator[Progress]:
    bar = Progress(total, what)
    try:
        yield bar
    finally:
        bar.close()
