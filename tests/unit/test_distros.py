"""The distro registry (wdimage.image.distros): a new distribution is one module and one registry line, and
everything a build, CI, the SBOM and the drill do per distro comes from its entry."""

import dataclasses
import shlex
from pathlib import Path

import pytest

from wdimage import cli
from wdimage.ci import matrix
from wdimage.errors import ExitCode, WdimageError
from wdimage.image import build, dib, distros, kernel_build, sbom
from wdimage.image.distros import Distro, Init, Initramfs, Kernel, KernelPackaging, Release
from wdimage.image.manifest import InstalledPackage
from wdimage.image.render import LibvirtType


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("WDIMAGE_CACHE", str(tmp_path / "cache"))


class Alpine(Distro):
    """A distro that exists only in this test, written as a distro module would write it."""

    def kernel_package(self, kernel_release, kernel):
        return "linux-virt"

    def extra_environment(self, settings):
        return [("DIB_ALPINE_TEST", settings.release)]


ALPINE = Alpine(
    name="alpine", default_release="3.20", elements=("alpine",), init_system=Init.OPENRC,
    watchdog_package="busybox", agent_package="qemu-guest-agent", release_env="DIB_RELEASE", ci_minutes=30,
    purl=("apk", "alpine"), releases=(Release("3.20", "this test"),), network="apk from the Alpine mirror",
    mirror_help="the Alpine mirror apk uses",
    kernel_packaging=KernelPackaging("tar-pkg", ("tar",)), initrd_file="initramfs-{release}-virt",
    drill_agent_warning="an alpine warning")


@pytest.fixture
def alpine(monkeypatch):
    monkeypatch.setitem(distros.DISTROS, "alpine", ALPINE)
    monkeypatch.setattr(matrix, "DISTROS", (*matrix.DISTROS, "alpine"))
    return ALPINE


def test_the_registry_is_one_module_per_distro():
    for name, spec in distros.DISTROS.items():
        assert spec.name == name
        module = getattr(distros, name)
        assert spec in vars(module).values(), f"{name}'s entry lives in distros/{name}.py"
        assert spec.init_system in Init and spec.release(spec.default_release) is not None
        assert 0 < spec.ci_minutes <= 360  # GitHub's job limit


def test_a_new_distro_builds_from_its_entry_alone(alpine, tmp_path, capsys):
    settings = build.make_settings("alpine", mirror="http://m.test/alpine", output=tmp_path / "o")
    assert (settings.mirror, settings.security_mirror) == ("http://m.test/alpine", None)
    assert build.init_system(settings) is Init.OPENRC
    command = build.dib_command(settings, dib.Layout.DIRECT, {"watchdog.conf": Path("/w")}, tmp_path / "x")
    env = dict(command.env)
    assert env["DIB_RELEASE"] == "3.20" and env["DIB_DISTRIBUTION_MIRROR"] == "http://m.test/alpine"
    assert list(env)[-1] == "DIB_ALPINE_TEST"  # after the common variables
    assert command.elements == ("alpine", "baremetal", "wdimage-watchdog", "wdimage-slim") and not command.skip_base
    # Through the CLI as well: argparse's distro choices come from the registry.
    assert cli.main(["build", "alpine", "--mirror", "http://m.test/alpine", "--output", str(tmp_path / "o"),
                     "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert "disk-image-create" in out and "network: apk from the Alpine mirror" in err
    parser = cli.make_parser()
    text = " ".join(next(a for a in parser._actions if a.dest == "command").choices["build"].format_help().split())
    assert "gentoo: GENTOO_MIRRORS" in text and "alpine: the Alpine mirror apk uses" in text
    assert "debian, gentoo, alpine: the distro's prebuilt kernel (bin)" in text


def test_a_new_distro_gets_its_kernel_file_names_and_packaging(alpine, tmp_path):
    settings = dataclasses.replace(build.make_settings("alpine", output=tmp_path / "o"), kernel=Kernel.SOURCE,
                                   kernel_source=kernel_build.KernelSource(tmp_path))
    kernel = kernel_build.KernelBuild(src=tmp_path, version="6.6", release="6.6.1-wdimage-0", config_sha256="0",
                                      base_config="b", fragments=(), compiler="gcc", ccache=False,
                                      directory=tmp_path / "k", seconds=0.0, cached=False)
    env = dict(build.dib_environment(settings, {"watchdog.conf": Path("/w")}, kernel))
    assert env["DIB_BAREMETAL_KERNEL_PATTERN"] == "vmlinuz-6.6.1-wdimage-0"
    assert env["DIB_BAREMETAL_INITRD_PATTERN"] == "initramfs-6.6.1-wdimage-0-virt"
    assert "wdimage-kernel" in build.elements(settings, dib.Layout.DIRECT)


def test_refusals_name_the_distros_that_take_the_option(alpine, tmp_path):
    def message(**options) -> str:
        with pytest.raises(WdimageError) as e:
            build.make_settings("alpine", output=tmp_path / "o", **options)
        assert e.value.code == ExitCode.USAGE
        return e.value.message

    assert message(init="openrc") == "--init is for debian only"
    assert message(base_image=tmp_path) == "--base-image is for centos only (DIB's cloud-image path)"
    assert message(kernel="source") == "--kernel source needs --kernel-src DIR (a clean Linux source tree)"
    with pytest.raises(WdimageError) as e:
        build.make_settings("centos", kernel="source")
    assert e.value.message == "--kernel source is for debian, gentoo and alpine"


def test_ci_sbom_and_drill_read_the_entry(alpine):
    cell = next(c for c in matrix.build_matrix()["include"] if c["distro"] == "alpine")
    assert cell["minutes"] == 30 and cell["release"] == "3.20"
    purl = sbom.package_url("alpine", "3.20", InstalledPackage("busybox", "1.36", "x86_64"))
    assert purl.type == "apk" and purl.namespace == "alpine"
    assert distros.drill_agent_warning("alpine", False) == "an alpine warning"
    assert distros.drill_agent_warning("alpine", True) is None


def test_the_initramfs_tools_are_a_column_of_the_entries(alpine, tmp_path):
    assert distros.get("debian").initramfs == (Initramfs.INITRAMFS_TOOLS, Initramfs.DRACUT)
    assert distros.get("centos").initramfs == distros.get("gentoo").initramfs == (Initramfs.DRACUT,)
    # A new distro takes the column's default (dracut) without saying anything.
    settings = build.make_settings("alpine", output=tmp_path / "o")
    assert dict(build.dib_environment(settings, {"watchdog.conf": Path("/w")}))["DIB_WATCHDOG_INITRAMFS_TOOL"] == "dracut"
    with pytest.raises(WdimageError) as e:
        build.make_settings("alpine", initramfs="initramfs-tools", output=tmp_path / "o")
    assert e.value.code == ExitCode.USAGE
    assert e.value.message == "--initramfs initramfs-tools: alpine takes dracut"
    assert "debian: initramfs-tools, dracut" in e.value.hint


def test_only_centos_warns_the_drill_about_its_agent():
    assert "--drill-agent" in distros.drill_agent_warning("centos", False)
    for name, drill_agent in (("centos", True), ("centos", None), ("debian", False), ("gentoo", False),
                              ("no-such-distro", False)):
        assert distros.drill_agent_warning(name, drill_agent) is None


def test_the_sbom_keeps_a_generic_purl_for_an_unknown_distro():
    purl = sbom.package_url("plan9", "4", InstalledPackage("rc", "1", "386"))
    assert purl.type == "generic" and purl.namespace == "plan9"


def test_kernel_packaging_tools_are_the_distros():
    debian, gentoo = distros.get("debian").kernel_packaging, distros.get("gentoo").kernel_packaging
    assert debian.target == "bindeb-pkg" and "dpkg-buildpackage" in debian.tools
    assert gentoo.target == "tar-pkg" and distros.get("centos").kernel_packaging is None


def test_closed_sets_are_enums_in_the_settings(tmp_path):
    settings = build.make_settings("debian", kernel="bin", init="openrc", layout="disk", libvirt_type="qemu",
                                   mirror="http://m.test/debian", output=tmp_path / "o")
    assert settings.kernel is Kernel.BIN and settings.init is Init.OPENRC
    assert settings.layout is dib.Layout.DISK and settings.libvirt_type is LibvirtType.QEMU
    assert build.make_settings("debian", mirror="http://m.test/debian").layout == dib.AUTO
    assert dib.layout_option("direct") is dib.Layout.DIRECT


def test_cli_choices_are_the_enums():
    parser = cli.make_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["build"]
    choices = {a.dest: a.choices for a in sub._actions if a.choices}
    assert choices["kernel"] == [str(k) for k in Kernel] and choices["init"] == [str(i) for i in Init]
    assert choices["initramfs"] == [str(i) for i in Initramfs]
    assert choices["libvirt_type"] == [str(t) for t in LibvirtType]
    assert list(choices["layout"]) == [dib.AUTO, *(str(layout) for layout in dib.Layout)]
    assert choices["distro"] == sorted(distros.DISTROS)


@pytest.mark.parametrize("kind,values", [(Init, "systemd, openrc"), (Kernel, "bin, source")])
def test_a_bad_enum_value_names_the_choices(kind, values, tmp_path):
    option = {Init: "init", Kernel: "kernel"}[kind]
    with pytest.raises(WdimageError) as e:
        build.make_settings("debian", mirror="http://m.test/debian", **{option: "runit"})
    assert e.value.message == f"--{option} 'runit': expected one of {values}"


def test_names_lists_three_with_commas():
    assert distros.names(lambda d: True) == "debian, centos and gentoo"
    assert distros.names(lambda d: d.name == "centos") == "centos"
    assert shlex.split(distros.names(lambda d: False)) == []
