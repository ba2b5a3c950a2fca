"""`wdimage diff` on two real builds of the same inputs: what differs, and that nothing else is reported.

The second build (same arguments, another output directory) is cached beside the first, in the directory
of its input key, so both are rebuilt when the inputs change and a rerun costs nothing.
"""

import json
from pathlib import Path

import pytest

from tests.real.conftest import built
from wdimage import cli
from wdimage.image.manifest_diff import diff_paths

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def second_debian_build(debian_image_dir: Path) -> Path:
    """The same build again, beside the first under its input key (and its lock)."""
    output = built("debian-i6300esb-again")
    assert output.parent == debian_image_dir.parent
    return output


def installed(directory) -> set[tuple]:
    manifest = json.loads((directory / "manifest.json").read_text())
    return {(p["name"], p["arch"], p["version"]) for p in manifest["installed_packages"]}


def test_two_builds_of_the_same_inputs_differ_only_where_they_really_do(debian_image_dir, second_debian_build,
                                                                        capsys):
    diff = diff_paths(debian_image_dir, second_debian_build)
    assert cli.main(["diff", str(debian_image_dir), str(second_debian_build)]) == 0
    print(capsys.readouterr().out)
    assert diff.settings == [], "same arguments, same tool versions: no setting may differ"
    assert diff.kernel_config_check == []
    assert [c.key for c in diff.ignored] == ["build.seconds", "build.started"]
    # Package versions differ only if the mirror moved between the two builds, and then exactly as listed.
    mirror_moved = installed(debian_image_dir) != installed(second_debian_build)
    assert bool(diff.packages or diff.installed_added or diff.installed_removed
                or diff.installed_changed) == mirror_moved
    differing = {c.key for c in diff.checksums}
    # The kernel comes from the same package, its config is the package's: byte-identical.
    assert not differing & {"debian-i6300esb.vmlinuz", "debian-i6300esb.kernel-config"}
    print(f"checksums that differ between the two builds: {sorted(differing)}")


def test_diff_json_of_the_two_builds(debian_image_dir, second_debian_build, capsys):
    assert cli.main(["diff", "--json", str(debian_image_dir / "manifest.json"), str(second_debian_build)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["settings"] == [] and out["kernel_config_check"] == []
    assert out["installed_packages"]["count"]["a"] > 100
