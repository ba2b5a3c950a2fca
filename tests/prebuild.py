"""Build everything the x86 real tests boot before `make test` runs the tests two at a time.

    python -m tests.prebuild                  # what make test does first; warm, it only verifies checksums
    python -m tests.prebuild --suite-kernel   # the kernel lane alone (what the first command runs beside it)

Two lanes, because a diskimage-builder run keeps about one core busy (measured: 46 CPU-s in 50 s) and the suite's
kernel compile can use both:
- the images, one after another (two DIB runs at once would fight over the apt cache DIB shares between builds;
  wdimage serialises them on a lock in that cache anyway);
- beside them, in a child process at a lower priority, the suite's kernel: the tree extracted, `make tinyconfig`
  plus its fragment, compiled and packaged (wdimage.image.kernel_build, cached by tree and config). The images
  lane runs at full speed on one core, the compile takes what is left, and both cores once the images are done.
Last, the image with that kernel: its compile is then found cached, so only its DIB run is left.
Everything here is cached by content (tests/build_cache.py, tests/cloud_standin.py), so the tests' own fixtures
find it built and only boot. The arm64 and s390x images stay with their marked tests (`make test-arm64`,
`make test-s390x`).
"""

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.cloud_standin import cached_standin
from tests.kernel_trees import full_kernel_tree, tiny_config
from tests.real.conftest import IMAGES, TINY_GUEST, built, built_source_image

KERNEL_NICENESS = 10  # the compile yields to the images lane, whose DIB runs are one core each


def _images() -> list[tuple[str, Callable[[], Path]]]:
    images = [(name, lambda name=name: built(name)) for name, args in IMAGES.items() if "--arch" not in args]
    return [*images, ("cloud-init stand-in", cached_standin)]


def suite_kernel() -> Path:
    """Compile (or find cached) the kernel of the image test_kernel_source.py boots, as its build would."""
    from wdimage.image import kernel_build
    from wdimage.models import Model

    tree = full_kernel_tree("6.1")
    source = kernel_build.validate_source(tree, tiny_config(tree), [TINY_GUEST])
    return kernel_build.prepare(source, Model.I6300ESB, "debian").packages


def _step(label: str, build: Callable[[], Path]) -> None:
    print(f"[prebuild] {label} ...", flush=True)
    at = time.monotonic()
    path = build()
    print(f"[prebuild] {label}: {path} ({time.monotonic() - at:.0f} s)", flush=True)


class KernelLane:
    """`python -m tests.prebuild --suite-kernel` in a child, its output in a log file shown on failure."""

    def __init__(self) -> None:
        self.log = tempfile.NamedTemporaryFile(prefix="prebuild-kernel-", suffix=".log", delete=False)
        self.started = time.monotonic()
        self.child = subprocess.Popen([sys.executable, "-m", "tests.prebuild", "--suite-kernel"],
                                      stdout=self.log, stderr=subprocess.STDOUT,
                                      preexec_fn=lambda: os.nice(KERNEL_NICENESS))
        print(f"[prebuild] the suite's kernel, beside the images (log: {self.log.name})", flush=True)

    def wait(self) -> None:
        if self.child.poll() is None:
            print("[prebuild] waiting for the suite's kernel ...", flush=True)
        code = self.child.wait()
        self.log.close()
        text = Path(self.log.name).read_text(errors="replace")
        if code != 0:
            print(text[-6000:], flush=True)
            raise SystemExit(f"[prebuild] the suite's kernel failed (exit {code}; log: {self.log.name})")
        print(f"[prebuild] the suite's kernel: ready {time.monotonic() - self.started:.0f} s after it started",
              flush=True)
        os.unlink(self.log.name)

    def stop(self) -> None:
        if self.child.poll() is None:
            self.child.terminate()
            self.child.wait()


def main(argv: list[str]) -> int:
    if argv == ["--suite-kernel"]:
        _step("the suite's kernel", suite_kernel)
        return 0
    if argv:
        print(__doc__, file=sys.stderr)
        return 2
    started = time.monotonic()
    lane = KernelLane()
    try:
        for name, build in _images():
            _step(name, build)
        lane.wait()
    finally:
        lane.stop()
    _step("debian-source-i6300esb (the suite's kernel, its image)", built_source_image)
    print(f"[prebuild] ready in {time.monotonic() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
