"""wdimage diff: only what really differs between two builds, the build's time and duration ignored (and said)."""

import copy
import json
from pathlib import Path

import pytest

from wdimage import cli
from wdimage.image.manifest_diff import diff_manifests, render_text


def manifest() -> dict:
    return {
        "schema": 1, "name": "debian-i6300esb", "distro": "debian", "release": "bookworm", "model": "i6300esb",
        "action": "reset", "timeout": 15, "boot": "direct", "machine": "pc",
        "kernel_cmdline": "console=ttyS0 root=/dev/vda rw", "agent": True,
        "elements": ["debian-minimal", "baremetal", "wdimage-watchdog"],
        "packages": {
            "kernel": {"name": "linux-image-6.1.0-37-amd64", "version": "6.1.140-1"},
            "watchdog": {"name": "watchdog", "version": "5.16-1+b2"},
            "qemu-guest-agent": {"name": "qemu-guest-agent", "version": "1:7.2+dfsg-7+deb12u13"},
        },
        "installed_packages": [
            {"name": "libc6", "version": "2.36-9+deb12u10", "arch": "amd64"},
            {"name": "libc6", "version": "2.36-9+deb12u10", "arch": "i386"},
            {"name": "qemu-guest-agent", "version": "1:7.2+dfsg-7+deb12u13", "arch": "amd64"},
            {"name": "watchdog", "version": "5.16-1+b2", "arch": "amd64"},
        ],
        "kernel_config_check": {"ok": True, "symbols": {"WATCHDOG": "y", "I6300ESB_WDT": "m"}},
        "openstack": {"hw_watchdog_action": "reset"},
        "files": {"image": "debian-i6300esb.raw", "kernel": "vmlinuz", "sbom": "sbom.cdx.json"},
        "checksums": {"debian-i6300esb.raw": "11" * 32, "vmlinuz": "22" * 32, "sbom.cdx.json": "33" * 32},
        "build": {"wdimage_version": "0.1.0", "dib_version": "3.43.0", "started": "2026-11-24T19:00:00Z",
                  "seconds": 131.5, "layout": "partitionless"},
    }


def rebuilt(original: dict) -> dict:
    """The same inputs built again later: only the time and duration differ."""
    again = copy.deepcopy(original)
    again["build"]["started"] = "2026-11-24T21:13:07Z"
    again["build"]["seconds"] = 118.2
    return again


def test_two_builds_of_the_same_inputs_show_no_differences_and_say_what_was_ignored():
    diff = diff_manifests(manifest(), rebuilt(manifest()))
    assert diff.identical
    assert [c.key for c in diff.ignored] == ["build.seconds", "build.started"]
    text = render_text(diff)
    assert "No differences." in text
    assert "ignored (expected to differ between any two builds): build.seconds, build.started" in text


def test_settings_packages_installed_list_check_and_checksums_are_reported():
    a, b = manifest(), rebuilt(manifest())
    b["timeout"] = 30
    b["elements"].append("openrc")
    b["build"]["dib_version"] = "3.44.0"
    b["packages"]["watchdog"]["version"] = "5.16-2"
    b["installed_packages"] = [
        {"name": "libc6", "version": "2.36-9+deb12u11", "arch": "amd64"},  # changed
        {"name": "libc6", "version": "2.36-9+deb12u10", "arch": "i386"},  # same
        {"name": "openrc", "version": "0.45.2-2", "arch": "amd64"},  # added
        {"name": "watchdog", "version": "5.16-2", "arch": "amd64"},  # changed; qemu-guest-agent removed
    ]
    b["kernel_config_check"]["symbols"]["I6300ESB_WDT"] = "n"
    b["kernel_config_check"]["ok"] = False
    b["checksums"]["debian-i6300esb.raw"] = "44" * 32
    diff = diff_manifests(a, b)
    assert not diff.identical
    assert {c.key: (c.a, c.b) for c in diff.settings} == {
        "timeout": (15, 30),
        "elements": (a["elements"], b["elements"]),
        "build.dib_version": ("3.43.0", "3.44.0"),
    }
    assert {c.key: (c.a, c.b) for c in diff.packages} == {"packages.watchdog.version": ("5.16-1+b2", "5.16-2")}
    assert [p["name"] for p in diff.installed_added] == ["openrc"]
    assert [p["name"] for p in diff.installed_removed] == ["qemu-guest-agent"]
    assert {c.key: (c.a, c.b) for c in diff.installed_changed} == {
        "libc6:amd64": ("2.36-9+deb12u10", "2.36-9+deb12u11"),
        "watchdog:amd64": ("5.16-1+b2", "5.16-2"),
    }
    assert {c.key for c in diff.kernel_config_check} == {
        "kernel_config_check.ok", "kernel_config_check.symbols.I6300ESB_WDT"}
    assert [(c.key, c.b) for c in diff.checksums] == [("debian-i6300esb.raw", "44" * 32)]
    text = render_text(diff)
    assert "  timeout: 15 -> 30" in text
    assert "installed packages (4 -> 4): 1 added, 1 removed, 2 changed" in text
    assert "  + openrc:amd64 0.45.2-2" in text
    assert "  - qemu-guest-agent:amd64 1:7.2+dfsg-7+deb12u13" in text
    assert "  ~ libc6:amd64 2.36-9+deb12u10 -> 2.36-9+deb12u11" in text


def test_a_key_present_on_one_side_only_is_a_difference():
    b = rebuilt(manifest())
    del b["openstack"]
    b["build"]["new_field"] = 1
    diff = diff_manifests(manifest(), b)
    assert {c.key: (c.a, c.b) for c in diff.settings} == {
        "openstack.hw_watchdog_action": ("reset", None), "build.new_field": (None, 1)}


def write_build(directory: Path, data: dict) -> Path:
    directory.mkdir()
    (directory / "manifest.json").write_text(json.dumps(data))
    return directory


def test_cli_accepts_directories_and_manifest_files_and_prints_json(tmp_path, capsys):
    a = write_build(tmp_path / "a", manifest())
    changed = rebuilt(manifest())
    changed["action"] = "poweroff"
    b = write_build(tmp_path / "b", changed)
    assert cli.main(["diff", str(a), str(b / "manifest.json"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["identical"] is False
    assert out["settings"] == [{"key": "action", "a": "reset", "b": "poweroff"}]
    assert [c["key"] for c in out["ignored"]["changes"]] == ["build.seconds", "build.started"]
    assert cli.main(["diff", str(a), str(b), "--exit-code"]) == 1
    assert cli.main(["diff", str(a), str(a), "--exit-code"]) == 0


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    ('{"schema": 1,\n  "name": }', "line 2: not valid JSON"),
    ('[1, 2]', "expected a JSON object"),
    ('{"schema": 2}', "manifest schema 2 is not supported"),
])
def test_bad_input_is_a_usage_error_naming_the_file(tmp_path, capsys, content, message):
    good = write_build(tmp_path / "good", manifest())
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content)
    assert cli.main(["diff", str(good), str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"wdimage: error: {bad}" in err
    assert message in err


def _with_kernel_source(base: dict, **changes) -> dict:
    m = copy.deepcopy(base)
    m["kernel_source"] = {"from": "source", "tree": "/src/linux", "version": "6.1.192",
                          "release": "6.1.192-wdimage-0123abcd", "config_sha256": "0123abcd" * 8,
                          "base_config": "defconfig + kvm_guest.config",
                          "fragments": ["kconfig-fragments/watchdog.config"], "compiler": "gcc 12.2.0",
                          "ccache": True, "seconds": 745.2, "cached": False, **changes}
    return m


def test_a_kernel_from_source_differs_by_its_config_not_by_its_compile_time():
    a = _with_kernel_source(manifest())
    again = _with_kernel_source(rebuilt(manifest()), seconds=3.1, cached=True)
    diff = diff_manifests(a, again)
    assert diff.identical
    assert {c.key for c in diff.ignored} >= {"kernel_source.seconds", "kernel_source.cached"}
    other = _with_kernel_source(manifest(), config_sha256="ffffffff" * 8, release="6.1.192-wdimage-ffffffff",
                                fragments=["kconfig-fragments/watchdog.config", "/home/me/extra.config"])
    keys = {c.key for c in diff_manifests(a, other).settings}
    assert keys == {"kernel_source.config_sha256", "kernel_source.release", "kernel_source.fragments"}
    assert "kernel_source.config_sha256" in render_text(diff_manifests(a, other))
    assert [c.key for c in diff_manifests(manifest(), a).settings][0].startswith("kernel_source.")
