"""The real tests' image cache key (tests/build_cache.py): it changes when the image could, and only then."""

import shutil
from pathlib import Path

import pytest

from tests import build_cache

ARGS = ("debian", "--model", "i6300esb", "--action", "reset", "--timeout", "15")


def test_the_build_closure_holds_the_build_code_and_its_templates_not_the_drill():
    files = {str(p.relative_to(build_cache.REPO)) for p in build_cache.import_closure()}
    assert {"wdimage/image/build.py", "wdimage/image/templates/watchdog.conf.j2", "wdimage/models.py",
            "wdimage/commands/build.py"} <= files
    # sbom is imported inside a function only: an ast read still finds it
    assert "wdimage/image/sbom.py" in files
    assert not [f for f in files if f.startswith(("wdimage/drill/", "wdimage/ci/"))], files
    assert "wdimage/commands/drill.py" not in files


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """A copy of what the key reads, to change one file at a time."""
    root = tmp_path_factory.mktemp("checkout")
    for name in ("wdimage", "elements", "kconfig-fragments"):
        shutil.copytree(build_cache.REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _edit(path: Path, text: str) -> str:
    before = path.read_text()
    path.write_text(before + text)
    return before


def test_a_drill_change_keeps_the_key_and_a_build_change_moves_it(checkout):
    key = build_cache.build_key(ARGS, checkout)
    assert build_cache.build_key(ARGS, checkout) == key  # stable
    for unrelated in ("wdimage/drill/runner.py", "wdimage/commands/drill.py"):
        before = _edit(checkout / unrelated, "\n# a drill-only change\n")
        try:
            assert build_cache.build_key(ARGS, checkout) == key, unrelated
        finally:
            (checkout / unrelated).write_text(before)
    for relevant in ("wdimage/image/build.py", "wdimage/image/templates/run.sh.j2",
                     "elements/wdimage-slim/finalise.d/95-wdimage-slim", "kconfig-fragments/watchdog.config"):
        before = _edit(checkout / relevant, "\n# changed\n")
        try:
            assert build_cache.build_key(ARGS, checkout) != key, relevant
        finally:
            (checkout / relevant).write_text(before)
    assert build_cache.build_key(ARGS, checkout) == key


def test_the_key_follows_the_settings_and_not_the_checkout_path(checkout, tmp_path):
    key = build_cache.build_key(ARGS, checkout)
    assert build_cache.build_key((*ARGS[:-1], "20"), checkout) != key  # another timeout: another watchdog.conf
    moved = tmp_path / "elsewhere"
    shutil.copytree(checkout, moved)
    assert build_cache.build_key(ARGS, moved) == key  # CI's fresh clone in another folder reuses the cache


def test_the_key_does_not_follow_the_debootstrap_cache(checkout, tmp_path, monkeypatch):
    """The first build of a cold cache leaves a fresh debootstrap tarball behind, which the next dry run reuses
    (DIB_DEBIAN_USE_DEBOOTSTRAP_CACHE=1): the key computed before and after that build must be the same."""
    monkeypatch.setenv("DIB_IMAGE_CACHE", str(tmp_path))
    cold = build_cache.build_key(ARGS, checkout)
    (tmp_path / "debootstrap-debian-bookworm-amd64.tar.gz").write_bytes(b"")
    assert "DIB_DEBIAN_USE_DEBOOTSTRAP_CACHE=1" not in build_cache.dry_run_command(ARGS, checkout)
    assert build_cache.build_key(ARGS, checkout) == cold


def test_a_file_of_the_checkout_named_in_the_args_keys_by_its_place_in_the_checkout(checkout, tmp_path):
    """The suite's kernel build names a fragment of the checkout (tests/fixtures/kernel/tiny-guest.config):
    a fresh clone in another folder must still reuse the cached image."""
    def args(root: Path) -> tuple[str, ...]:
        return (*ARGS, "--test-binary", str(root / "elements/wdimage-watchdog/wdimage-files/wdimage-stamp-armed.sh"))
    key = build_cache.build_key(args(checkout), checkout)
    moved = tmp_path / "elsewhere"
    shutil.copytree(checkout, moved)
    assert build_cache.build_key(args(moved), moved) == key
    assert build_cache.build_key(args(moved), checkout) != key  # a file outside the checkout keys by its path
