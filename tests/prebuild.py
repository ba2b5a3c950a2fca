"""Build everything the x86 real tests boot, one thing at a time, before `make test` runs the tests two at a time.

    python -m tests.prebuild          # what make test does first; warm, it only verifies checksums

Why first and one at a time: two diskimage-builder runs at once fight over the apt cache DIB shares between
builds, and a kernel compile beside two TCG guests stretches their timing windows. Everything here is cached by
content (tests/build_cache.py, tests/cloud_standin.py), so the tests' own fixtures find it built and only boot.
The arm64 and s390x images stay with their marked tests (`make test-arm64`, `make test-s390x`).
"""

import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.cloud_standin import cached_standin
from tests.real.conftest import IMAGES, built, built_source_image


def _steps() -> list[tuple[str, Callable[[], Path]]]:
    images = [(name, lambda name=name: built(name)) for name, args in IMAGES.items() if "--arch" not in args]
    return [*images, ("debian-source-i6300esb (the suite's kernel)", built_source_image),
            ("cloud-init stand-in", cached_standin)]


def main() -> int:
    steps = _steps()
    started = time.monotonic()
    for number, (name, build) in enumerate(steps, 1):
        print(f"[prebuild {number}/{len(steps)}] {name} ...", flush=True)
        at = time.monotonic()
        path = build()
        print(f"[prebuild {number}/{len(steps)}] {name}: {path} ({time.monotonic() - at:.0f} s)", flush=True)
    print(f"[prebuild] {len(steps)} ready in {time.monotonic() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
