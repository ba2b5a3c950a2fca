"""The SBOM of the real Debian image built in `make test` (fixture debian_image_dir)."""

import json
import subprocess

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from wdimage.image.manifest import read_manifest
from wdimage.image.sbom import ROLE_PROPERTY, sbom_json

pytestmark = pytest.mark.real


def test_sbom_lists_every_package_and_marks_the_watchdog_daemon_agent_and_kernel(debian_image_dir):
    manifest = json.loads((debian_image_dir / "manifest.json").read_text())
    text = (debian_image_dir / manifest["files"]["sbom"]).read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    sbom = json.loads(text)
    roles = {p["value"]: c for c in sbom["components"] for p in c.get("properties", []) if p["name"] == ROLE_PROPERTY}
    assert set(roles) == {"kernel", "watchdog", "qemu-guest-agent"}
    for role, component in roles.items():
        assert (component["name"], component["version"]) == (
            manifest["packages"][role]["name"], manifest["packages"][role]["version"])
        assert component["purl"].startswith(f"pkg:deb/debian/{component['name']}@")
    installed = {(p["name"], p["version"]) for p in manifest["installed_packages"]}
    assert len(installed) > 100
    assert {(c["name"], c["version"]) for c in sbom["components"]} == installed
    assert sbom["metadata"]["component"]["hashes"][0]["content"] == manifest["checksums"][manifest["files"]["image"]]
    print(f"SBOM: {len(sbom['components'])} components; "
          + ", ".join(f"{role} {c['name']} {c['version']}" for role, c in sorted(roles.items())))


def test_sbom_is_covered_by_sha256sums_and_regenerates_byte_for_byte(debian_image_dir):
    manifest = json.loads((debian_image_dir / "manifest.json").read_text())
    sbom_file = manifest["files"]["sbom"]
    sums = (debian_image_dir / "SHA256SUMS").read_text()
    assert f"  {sbom_file}\n" in sums and "  manifest.json\n" in sums
    subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=debian_image_dir, check=True)
    assert sbom_json(read_manifest(debian_image_dir)) == (debian_image_dir / sbom_file).read_text()
