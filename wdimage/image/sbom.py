"""The image's SBOM: CycloneDX JSON (spec 1.6) written with cyclonedx-python-lib, the one module using it.

Every installed package becomes a component with a package URL for its distro (pkg:deb/debian/...,
pkg:rpm/centos/..., pkg:ebuild/gentoo/...). The packages the watchdog setup depends on (the kernel, the watchdog
daemon, the QEMU guest agent) carry the property `wdimage:role`. A kernel that wdimage compiled from source
(Manifest.kernel_source) carries `wdimage:kernel-source:*` properties (tree version, release, config hash,
fragments, compiler) on its package, or is a component of its own where no package holds it (Gentoo). The
metadata component is the image itself.
Identical inputs give byte-identical output: the serial number is derived from the content and the timestamp
is the build's start time recorded in the manifest.
"""

import datetime
import hashlib
import json
import re
import uuid
from collections.abc import Iterable
from pathlib import Path

from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL

from wdimage import __version__
from wdimage.fileio import write_atomically
from wdimage.image import distros
from wdimage.image.manifest import InstalledPackage, Manifest

SBOM_FILE = "sbom.cdx.json"
ROLE_PROPERTY = "wdimage:role"
# Roles named in the manifest's `packages`, in the order they are reported.
ROLES = ("kernel", "watchdog", "qemu-guest-agent")
# Namespace for content-derived serial numbers (uuid5), fixed forever so equal inputs give equal serials.
_SERIAL_NAMESPACE = uuid.UUID("5f0c8f8e-3c8e-4b8a-9d3e-7a0e2f1c9b41")


def package_url(distro: str, release: str, package: InstalledPackage) -> PackageURL:
    """The purl of one installed package of `distro`."""
    kind, vendor = distros.get(distro).purl if distro in distros.DISTROS else ("generic", distro)
    name, namespace = package.name, vendor
    if kind == "ebuild" and "/" in name:  # Gentoo atoms are category/name
        category, name = name.split("/", 1)
        namespace = f"{vendor}/{category}"
    version, qualifiers = package.version or None, {}
    if kind == "rpm" and version and re.fullmatch(r"\d+:.+", version):  # the purl spec: epoch as a qualifier
        qualifiers["epoch"], version = version.split(":", 1)
    if package.arch:
        qualifiers["arch"] = package.arch
    if release and "/" not in release:  # a Gentoo profile path is no release name
        qualifiers["distro"] = f"{distro}-{release}"
    return PackageURL(type=kind, namespace=namespace, name=name, version=version, qualifiers=qualifiers)


def package_roles(manifest: Manifest) -> dict[str, str]:
    """Package name -> role, for the packages the manifest's `packages` names."""
    roles = {}
    for role in ROLES:
        package = (manifest.packages or {}).get(role)
        if package and package.name:
            roles.setdefault(package.name, role)
    return roles


def build_bom(manifest: Manifest) -> Bom:
    """The CycloneDX document for the image that `manifest` describes (its installed packages included)."""
    distro, release = manifest.distro or "", manifest.release or ""
    roles = package_roles(manifest)
    components = _package_components(distro, release, _with_role_packages(manifest), roles)
    _add_kernel_source(components, manifest.kernel_source)
    image = _image_component(manifest)
    bom = Bom(
        serial_number=_content_serial(manifest),
        metadata=BomMetaData(component=image, timestamp=_build_time(manifest)),
        components=components,
    )
    bom.metadata.tools.components.add(
        Component(type=ComponentType.APPLICATION, name="wdimage", version=__version__))
    bom.register_dependency(image, components)
    return bom


def sbom_json(manifest: Manifest) -> str:
    """The SBOM as CycloneDX 1.6 JSON text."""
    return JsonV1Dot6(build_bom(manifest)).output_as_string(indent=2) + "\n"


def write_sbom(manifest: Manifest, path: Path) -> None:
    """Write the image's CycloneDX JSON SBOM to `path` (atomically: temp file + rename)."""
    write_atomically(path, sbom_json(manifest))


def _with_role_packages(manifest: Manifest) -> list[InstalledPackage]:
    """The installed packages, plus any role package the manifest names but the list lacks."""
    installed = list(manifest.installed_packages or ())
    listed = {p.name for p in installed}
    extra = []
    for role in ROLES:
        package = (manifest.packages or {}).get(role)
        if package and package.name and package.name not in listed:
            extra.append(InstalledPackage(package.name, package.version, ""))
    return installed + extra


def _package_components(distro: str, release: str, packages: Iterable[InstalledPackage],
                        roles: dict[str, str]) -> list[Component]:
    components: dict[str, Component] = {}
    for package in sorted(packages, key=lambda p: (p.name, p.arch, p.version)):
        purl = package_url(distro, release, package)
        ref = purl.to_string()
        if ref in components:  # the same package listed twice
            continue
        properties = [Property(name=ROLE_PROPERTY, value=roles[package.name])] if package.name in roles else []
        components[ref] = Component(
            type=ComponentType.LIBRARY, name=package.name, version=package.version or None,
            purl=purl, bom_ref=ref, properties=properties)
    return list(components.values())


KERNEL_SOURCE_PREFIX = "wdimage:kernel-source:"
_KERNEL_SOURCE_FIELDS = ("version", "release", "config_sha256", "base_config", "compiler")


def _kernel_source_properties(source: dict) -> list[Property]:
    properties = [Property(name=f"{KERNEL_SOURCE_PREFIX}{key}", value=str(source[key]))
                  for key in _KERNEL_SOURCE_FIELDS if source.get(key) is not None]
    properties += [Property(name=f"{KERNEL_SOURCE_PREFIX}fragment", value=str(f)) for f in source.get("fragments", [])]
    return properties


def _add_kernel_source(components: list[Component], source: dict | None) -> None:
    """Mark the kernel's package as compiled from source, or add the kernel itself where no package holds it."""
    if not source:
        return
    for component in components:
        if any(p.name == ROLE_PROPERTY and p.value == "kernel" for p in component.properties):
            component.properties.update(_kernel_source_properties(source))
            return
    release = str(source.get("release") or "unknown")
    components.append(Component(
        type=ComponentType.OPERATING_SYSTEM, name="linux", version=release, bom_ref=f"kernel-source:{release}",
        description="Linux kernel compiled from source by wdimage",
        properties=[Property(name=ROLE_PROPERTY, value="kernel"), *_kernel_source_properties(source)]))


def _image_component(manifest: Manifest) -> Component:
    properties = [
        Property(name=f"wdimage:{key}", value=str(getattr(manifest, key)))
        for key in ("distro", "release", "model", "action", "timeout", "boot", "machine", "agent")
        if getattr(manifest, key) is not None
    ]
    hashes = []
    image_file = manifest.files.image if manifest.files else None
    digest = (manifest.checksums or {}).get(image_file or "")
    if digest:
        hashes.append(HashType(alg=HashAlgorithm.SHA_256, content=digest))
    name = manifest.name or f"{manifest.distro or 'image'}-{manifest.model or ''}".rstrip("-")
    return Component(
        type=ComponentType.OPERATING_SYSTEM, name=name, version=manifest.release or None,
        bom_ref=f"image:{name}", description="QEMU/KVM guest image built by wdimage", hashes=hashes,
        properties=properties)


def _content_serial(manifest: Manifest) -> uuid.UUID:
    """A serial number that is the same exactly when the SBOM's inputs are."""
    data = manifest.to_json()
    content = json.dumps({"manifest": _without_sbom_fields(data), "packages": data["installed_packages"] or []},
                         sort_keys=True, default=str)
    return uuid.uuid5(_SERIAL_NAMESPACE, hashlib.sha256(content.encode()).hexdigest())


def _without_sbom_fields(manifest: dict) -> dict:
    """The manifest minus what records the SBOM itself, so that the SBOM regenerated from the published
    manifest (which names the SBOM and holds its checksum) is the same document."""
    stripped = dict(manifest)
    files = dict(stripped.get("files") or {})
    sbom_file = files.pop("sbom", SBOM_FILE)
    checksums = dict(stripped.get("checksums") or {})
    checksums.pop(sbom_file, None)
    stripped["files"], stripped["checksums"] = files, checksums
    return stripped


def _build_time(manifest: Manifest) -> datetime.datetime:
    """The build's start time from the manifest (UTC), or the epoch when it has none."""
    started = manifest.build.started if manifest.build else None
    if started:
        try:
            moment = datetime.datetime.fromisoformat(str(started).replace("Z", "+00:00"))
            return moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc)
        except ValueError:
            pass
    return datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
