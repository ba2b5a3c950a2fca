"""What really differs between two builds: their manifest.json files compared field by field.

Compared: settings (every top-level field, the build's tool versions and layout, and for a kernel compiled from
source its tree version, release, config hash, fragments and compiler), the watchdog-relevant
package versions, the full installed package list (added, removed, changed), the kernel-config check result and
the file checksums. Ignored, and reported as ignored: what differs between any two builds by nature (the start
time and the duration of the build and of a kernel compile, and whether the compile was reused).
"""

import dataclasses
import json
from pathlib import Path

from wdimage.image.manifest import read_manifest_json

# Dotted keys that differ between any two builds of the same inputs (a kernel compiled from source: how long
# it took, and whether this build reused an earlier compile).
EXPECTED_TO_DIFFER = ("build.started", "build.seconds", "kernel_source.seconds", "kernel_source.cached")
# Top-level keys compared in their own sections; every other key is a setting.
_SECTIONED = ("packages", "installed_packages", "kernel_config_check", "checksums", "build")


@dataclasses.dataclass(frozen=True)
class Change:
    key: str  # dotted path, e.g. "timeout", "packages.watchdog.version", "build.dib_version"
    a: object  # None when absent on that side
    b: object


@dataclasses.dataclass
class ManifestDiff:
    a: str  # where each manifest was read from
    b: str
    settings: list[Change] = dataclasses.field(default_factory=list)
    packages: list[Change] = dataclasses.field(default_factory=list)
    installed_added: list[dict] = dataclasses.field(default_factory=list)
    installed_removed: list[dict] = dataclasses.field(default_factory=list)
    installed_changed: list[Change] = dataclasses.field(default_factory=list)  # key = "name:arch"
    installed_counts: tuple[int, int] = (0, 0)
    kernel_config_check: list[Change] = dataclasses.field(default_factory=list)
    checksums: list[Change] = dataclasses.field(default_factory=list)
    ignored: list[Change] = dataclasses.field(default_factory=list)

    @property
    def differs(self) -> bool:
        """What `--exit-code` reports: the settings, packages or kernel config check differ. Checksums are
        reported apart: the image's differs between any two builds (timestamps, file system UUIDs)."""
        return bool(self.settings or self.packages or self.installed_added or self.installed_removed
                    or self.installed_changed or self.kernel_config_check)

    @property
    def identical(self) -> bool:
        return not (self.differs or self.checksums)


def load_manifest(path: Path) -> tuple[dict, Path]:
    """The manifest at `path` (a build output directory or a manifest.json file) as JSON, validated by
    wdimage.image.manifest, and the file it came from. The diff compares the JSON: every key, known or not."""
    return read_manifest_json(path, "pass a 'wdimage build' output directory or its manifest.json")


def diff_manifests(a: dict, b: dict, a_label: str = "A", b_label: str = "B") -> ManifestDiff:
    """Everything that differs between manifests `a` and `b`, sorted into sections."""
    result = ManifestDiff(a_label, b_label)
    settings_a = {k: v for k, v in a.items() if k not in _SECTIONED}
    settings_b = {k: v for k, v in b.items() if k not in _SECTIONED}
    for change in _flat_changes(settings_a, settings_b):
        (result.ignored if change.key in EXPECTED_TO_DIFFER else result.settings).append(change)
    for change in _flat_changes(a.get("build") or {}, b.get("build") or {}, prefix="build."):
        (result.ignored if change.key in EXPECTED_TO_DIFFER else result.settings).append(change)
    result.packages = _flat_changes(a.get("packages") or {}, b.get("packages") or {}, prefix="packages.")
    _diff_installed(result, a.get("installed_packages") or [], b.get("installed_packages") or [])
    result.kernel_config_check = _flat_changes(a.get("kernel_config_check") or {},
                                               b.get("kernel_config_check") or {}, prefix="kernel_config_check.")
    result.checksums = _flat_changes(a.get("checksums") or {}, b.get("checksums") or {}, flatten=False)
    return result


def diff_paths(a: Path, b: Path) -> ManifestDiff:
    manifest_a, file_a = load_manifest(a)
    manifest_b, file_b = load_manifest(b)
    return diff_manifests(manifest_a, manifest_b, str(file_a), str(file_b))


def _flat_changes(a: dict, b: dict, prefix: str = "", flatten: bool = True) -> list[Change]:
    """The keys whose values differ, nested dicts flattened to dotted keys (lists compared whole)."""
    flat_a = _flatten(a, prefix) if flatten else {prefix + k: v for k, v in a.items()}
    flat_b = _flatten(b, prefix) if flatten else {prefix + k: v for k, v in b.items()}
    return [Change(key, flat_a.get(key), flat_b.get(key))
            for key in sorted(flat_a.keys() | flat_b.keys()) if flat_a.get(key) != flat_b.get(key)]


def _flatten(value: dict, prefix: str) -> dict:
    flat = {}
    for key, item in value.items():
        if isinstance(item, dict) and item:
            flat.update(_flatten(item, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = item
    return flat


def _diff_installed(result: ManifestDiff, a: list[dict], b: list[dict]) -> None:
    by_key_a, by_key_b = _packages_by_key(a), _packages_by_key(b)
    result.installed_counts = (len(by_key_a), len(by_key_b))
    for key in sorted(by_key_a.keys() | by_key_b.keys()):
        pa, pb = by_key_a.get(key), by_key_b.get(key)
        if pb is None:
            result.installed_removed.append(pa)
        elif pa is None:
            result.installed_added.append(pb)
        elif pa.get("version") != pb.get("version"):
            result.installed_changed.append(Change(key, pa.get("version"), pb.get("version")))


def _packages_by_key(packages: list[dict]) -> dict[str, dict]:
    """Installed packages by "name:arch" (a package can be installed for several architectures)."""
    return {f"{p.get('name')}:{p.get('arch') or ''}".rstrip(":"): p for p in packages if isinstance(p, dict)}


# --- rendering ----------------------------------------------------------------------------------------------

def render_text(diff: ManifestDiff) -> str:
    lines = [f"--- {diff.a}", f"+++ {diff.b}"]
    if diff.identical:
        lines.append("No differences.")
    elif not diff.differs:
        lines.append("No differences in settings, packages or the kernel config check (checksums only).")
    _section(lines, "settings", diff.settings)
    _section(lines, "packages", diff.packages)
    _installed_section(lines, diff)
    _section(lines, "kernel config check", diff.kernel_config_check)
    _section(lines, "checksums (not counted by --exit-code)", diff.checksums)
    if diff.ignored:
        lines.append("ignored (expected to differ between any two builds): "
                     + ", ".join(change.key for change in diff.ignored))
    return "\n".join(lines) + "\n"


def _section(lines: list[str], title: str, changes: list[Change]) -> None:
    if not changes:
        return
    lines.append(f"{title}:")
    lines += [f"  {c.key}: {_show(c.a)} -> {_show(c.b)}" for c in changes]


def _installed_section(lines: list[str], diff: ManifestDiff) -> None:
    if not (diff.installed_added or diff.installed_removed or diff.installed_changed):
        return
    count_a, count_b = diff.installed_counts
    lines.append(f"installed packages ({count_a} -> {count_b}): {len(diff.installed_added)} added, "
                 f"{len(diff.installed_removed)} removed, {len(diff.installed_changed)} changed")
    lines += [f"  + {_package_text(p)}" for p in diff.installed_added]
    lines += [f"  - {_package_text(p)}" for p in diff.installed_removed]
    lines += [f"  ~ {c.key} {c.a} -> {c.b}" for c in diff.installed_changed]


def _package_text(package: dict) -> str:
    arch = f":{package['arch']}" if package.get("arch") else ""
    return f"{package.get('name')}{arch} {package.get('version')}"


def _show(value) -> str:
    return "(absent)" if value is None else json.dumps(value, ensure_ascii=False)


def diff_json(diff: ManifestDiff) -> dict:
    def changes(items: list[Change]) -> list[dict]:
        return [{"key": c.key, "a": c.a, "b": c.b} for c in items]

    return {
        "a": diff.a, "b": diff.b, "identical": diff.identical, "differs": diff.differs,
        "settings": changes(diff.settings),
        "packages": changes(diff.packages),
        "installed_packages": {
            "count": {"a": diff.installed_counts[0], "b": diff.installed_counts[1]},
            "added": diff.installed_added, "removed": diff.installed_removed,
            "changed": changes(diff.installed_changed),
        },
        "kernel_config_check": changes(diff.kernel_config_check),
        "checksums": changes(diff.checksums),
        "ignored": {"reason": "expected to differ between any two builds", "changes": changes(diff.ignored)},
    }
