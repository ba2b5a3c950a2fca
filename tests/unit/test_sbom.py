"""The image SBOM: valid CycloneDX 1.6, one component per installed package with its distro's purl, the watchdog
daemon / guest agent / kernel marked with their versions, byte-identical for identical inputs."""

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from wdimage.image.manifest import InstalledPackage, Manifest, from_json
from wdimage.image.sbom import ROLE_PROPERTY, package_url, sbom_json, write_sbom


def debian_manifest() -> dict:
    return {
        "schema": 1, "name": "debian-i6300esb", "distro": "debian", "release": "bookworm", "model": "i6300esb",
        "action": "reset", "timeout": 15, "boot": "direct", "machine": "pc", "agent": True,
        "packages": {
            "kernel": {"name": "linux-image-6.1.0-37-amd64", "version": "6.1.140-1"},
            "watchdog": {"name": "watchdog", "version": "5.16-1+b2"},
            "qemu-guest-agent": {"name": "qemu-guest-agent", "version": "1:7.2+dfsg-7+deb12u13"},
        },
        "files": {"image": "debian-i6300esb.raw", "sbom": "sbom.cdx.json"},
        "checksums": {"debian-i6300esb.raw": "ab" * 32},
        "build": {"started": "2026-11-24T19:00:00Z", "seconds": 131.5},
    }


def manifest_of(data: dict, installed_packages: list[dict]) -> Manifest:
    """The Manifest of `data` with these installed packages, as wdimage.image.manifest reads it."""
    return from_json({**data, "installed_packages": installed_packages}, Path("manifest.json"))


def debian_packages() -> list[dict]:
    return [
        {"name": "libc6", "version": "2.36-9+deb12u10", "arch": "amd64"},
        {"name": "linux-image-6.1.0-37-amd64", "version": "6.1.140-1", "arch": "amd64"},
        {"name": "qemu-guest-agent", "version": "1:7.2+dfsg-7+deb12u13", "arch": "amd64"},
        {"name": "watchdog", "version": "5.16-1+b2", "arch": "amd64"},
    ]


def host_dpkg_packages() -> list[dict]:
    """This Debian machine's own installed package list: a real, several-hundred-package input."""
    if not shutil.which("dpkg-query"):
        pytest.skip("not a Debian system (no dpkg-query)")
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Package}\t${Version}\t${Architecture}\n"],
                         check=True, capture_output=True, text=True).stdout
    return [dict(zip(("name", "version", "arch"), line.split("\t"))) for line in out.splitlines() if line]


def validate(text: str) -> None:
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    assert error is None, f"not valid CycloneDX 1.6: {error}"


def roles_of(sbom: dict) -> dict[str, dict]:
    found = {}
    for component in sbom["components"]:
        for prop in component.get("properties", []):
            if prop["name"] == ROLE_PROPERTY:
                found[prop["value"]] = component
    return found


def test_sbom_is_valid_cyclonedx_and_marks_the_watchdog_packages(tmp_path):
    path = tmp_path / "sbom.cdx.json"
    write_sbom(manifest_of(debian_manifest(), debian_packages()), path)
    text = path.read_text()
    validate(text)
    sbom = json.loads(text)
    assert sbom["specVersion"] == "1.6"
    assert sbom["metadata"]["component"]["name"] == "debian-i6300esb"
    assert sbom["metadata"]["component"]["hashes"] == [{"alg": "SHA-256", "content": "ab" * 32}]
    roles = roles_of(sbom)
    assert {role: (c["name"], c["version"]) for role, c in roles.items()} == {
        "kernel": ("linux-image-6.1.0-37-amd64", "6.1.140-1"),
        "watchdog": ("watchdog", "5.16-1+b2"),
        "qemu-guest-agent": ("qemu-guest-agent", "1:7.2+dfsg-7+deb12u13"),
    }
    assert roles["watchdog"]["purl"] == "pkg:deb/debian/watchdog@5.16-1%2Bb2?arch=amd64&distro=debian-bookworm"
    assert len(sbom["components"]) == 4
    # The image depends on every package, so the graph is complete.
    image_deps = next(d for d in sbom["dependencies"] if d["ref"] == sbom["metadata"]["component"]["bom-ref"])
    assert len(image_deps["dependsOn"]) == 4


def test_sbom_is_byte_identical_for_identical_inputs_and_changes_with_them():
    first = sbom_json(manifest_of(debian_manifest(), debian_packages()))
    assert first == sbom_json(manifest_of(debian_manifest(), debian_packages()))
    assert json.loads(first)["metadata"]["timestamp"].startswith("2026-11-24T19:00:00")
    newer = debian_packages()
    newer[0] = {**newer[0], "version": "2.36-9+deb12u11"}
    second = sbom_json(manifest_of(debian_manifest(), newer))
    assert json.loads(first)["serialNumber"] != json.loads(second)["serialNumber"]


def test_sbom_regenerated_from_the_published_manifest_is_the_same_document(tmp_path):
    """The build writes the SBOM, then records its name and checksum in the manifest; regenerating the SBOM
    from that published manifest gives the same bytes, so its checksum can be verified from the manifest."""
    before = debian_manifest()
    del before["files"]["sbom"]
    path = tmp_path / "sbom.cdx.json"
    write_sbom(manifest_of(before, debian_packages()), path)
    published = {**before, "files": {**before["files"], "sbom": path.name},
                 "checksums": {**before["checksums"], path.name: hashlib.sha256(path.read_bytes()).hexdigest()}}
    assert sbom_json(manifest_of(published, debian_packages())) == path.read_text()


def test_role_package_missing_from_the_list_is_still_listed():
    packages = [p for p in debian_packages() if p["name"] != "watchdog"]
    sbom = json.loads(sbom_json(manifest_of(debian_manifest(), packages)))
    assert roles_of(sbom)["watchdog"]["version"] == "5.16-1+b2"


def test_real_dpkg_list_of_this_machine(tmp_path):
    packages = host_dpkg_packages()
    assert len(packages) > 100
    path = tmp_path / "sbom.cdx.json"
    write_sbom(manifest_of(debian_manifest(), packages), path)
    text = path.read_text()
    validate(text)
    sbom = json.loads(text)
    listed = {(c["name"], c["version"]) for c in sbom["components"]}
    assert {(p["name"], p["version"]) for p in packages} <= listed
    assert len({c["bom-ref"] for c in sbom["components"]}) == len(sbom["components"])


@pytest.mark.parametrize("distro, release, package, purl", [
    ("centos", "9-stream", {"name": "watchdog", "version": "5.16-5.el9", "arch": "x86_64"},
     "pkg:rpm/centos/watchdog@5.16-5.el9?arch=x86_64&distro=centos-9-stream"),
    ("centos", "9-stream", {"name": "qemu-guest-agent", "version": "17:9.1.0-15.el9", "arch": "x86_64"},
     "pkg:rpm/centos/qemu-guest-agent@9.1.0-15.el9?arch=x86_64&distro=centos-9-stream&epoch=17"),
    ("gentoo", "default/linux/amd64/23.0", {"name": "sys-apps/watchdog", "version": "5.16", "arch": ""},
     "pkg:ebuild/gentoo/sys-apps/watchdog@5.16"),
    ("debian", "bookworm", {"name": "libstdc++6", "version": "12.2.0-14", "arch": "amd64"},
     "pkg:deb/debian/libstdc%2B%2B6@12.2.0-14?arch=amd64&distro=debian-bookworm"),
])
def test_package_urls_per_distro(distro, release, package, purl):
    assert package_url(distro, release, InstalledPackage(**package)).to_string() == purl


def test_gentoo_sbom_is_valid():
    manifest = {**debian_manifest(), "distro": "gentoo", "release": "", "name": "gentoo-i6300esb",
                "packages": {"kernel": {"name": "sys-kernel/gentoo-kernel-bin", "version": "6.6.58"},
                             "watchdog": {"name": "sys-apps/watchdog", "version": "5.16"},
                             "qemu-guest-agent": {"name": "app-emulation/qemu-guest-agent", "version": "9.0.2"}}}
    packages = [{"name": "sys-apps/watchdog", "version": "5.16", "arch": "amd64"}]
    text = sbom_json(manifest_of(manifest, packages))
    validate(text)
    assert set(roles_of(json.loads(text))) == {"kernel", "watchdog", "qemu-guest-agent"}


def test_write_sbom_replaces_atomically_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "sbom.cdx.json"
    path.write_text("old")
    write_sbom(manifest_of(debian_manifest(), debian_packages()), path)
    assert json.loads(path.read_text())["bomFormat"] == "CycloneDX"
    assert [p.name for p in tmp_path.iterdir()] == ["sbom.cdx.json"]


KERNEL_SOURCE = {"from": "source", "tree": "/src/linux", "version": "6.1.192", "release": "6.1.192-wdimage-0123abcd",
                 "config_sha256": "0123abcd" * 8, "base_config": "defconfig + kvm_guest.config",
                 "fragments": ["kconfig-fragments/watchdog.config", "kconfig-fragments/i6300esb.config"],
                 "compiler": "gcc (Debian 12.2.0-14) 12.2.0", "ccache": True, "seconds": 700.0, "cached": False}


def _kernel_source_properties(component: dict) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for prop in component.get("properties", []):
        if prop["name"].startswith("wdimage:kernel-source:"):
            found.setdefault(prop["name"].split(":", 2)[2], []).append(prop["value"])
    return found


def test_a_kernel_compiled_from_source_is_marked_on_its_package():
    release = KERNEL_SOURCE["release"]
    manifest = {**debian_manifest(), "kernel_source": KERNEL_SOURCE,
                "packages": {**debian_manifest()["packages"],
                             "kernel": {"name": f"linux-image-{release}", "version": f"{release}-1"}}}
    packages = [p for p in debian_packages() if not p["name"].startswith("linux-image")]
    packages.append({"name": f"linux-image-{release}", "version": f"{release}-1", "arch": "amd64"})
    text = sbom_json(manifest_of(manifest, packages))
    validate(text)
    kernel = roles_of(json.loads(text))["kernel"]
    assert kernel["name"] == f"linux-image-{release}"
    props = _kernel_source_properties(kernel)
    assert props["config_sha256"] == [KERNEL_SOURCE["config_sha256"]] and props["version"] == ["6.1.192"]
    assert sorted(props["fragment"]) == sorted(KERNEL_SOURCE["fragments"]) and props["compiler"] == [KERNEL_SOURCE["compiler"]]


def test_a_kernel_from_source_without_a_package_is_a_component_of_its_own():
    manifest = {**debian_manifest(), "distro": "gentoo", "release": "", "kernel_source": KERNEL_SOURCE,
                "packages": {"watchdog": {"name": "sys-apps/watchdog", "version": "5.16"}}}
    text = sbom_json(manifest_of(manifest, [{"name": "sys-apps/watchdog", "version": "5.16", "arch": "amd64"}]))
    validate(text)
    kernel = roles_of(json.loads(text))["kernel"]
    assert (kernel["name"], kernel["version"]) == ("linux", KERNEL_SOURCE["release"])
    assert _kernel_source_properties(kernel)["release"] == [KERNEL_SOURCE["release"]]
