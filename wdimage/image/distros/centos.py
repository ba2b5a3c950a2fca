"""CentOS Stream: DIB's cloud-image path (the GenericCloud image, or a local one with --base-image), systemd,
the distro's own kernel only."""

from __future__ import annotations

from typing import TYPE_CHECKING

from wdimage.image.distros import Distro, Init, Initramfs, Kernel, Release

if TYPE_CHECKING:
    from wdimage.image.build import BuildSettings

_EL9 = "tests/fixtures/upstream/el9"


class CentOS(Distro):
    def kernel_package(self, kernel_release: str, kernel: Kernel) -> str:
        return "kernel-core"

    def environment(self, settings: BuildSettings) -> list[tuple[str, str]]:
        env = super().environment(settings)
        if settings.base_image:
            env.append(("DIB_LOCAL_IMAGE", str(settings.base_image)))
        return env


CENTOS = CentOS(
    name="centos", default_release="9-stream", elements=("centos",), init_system=Init.SYSTEMD,
    watchdog_package="watchdog", agent_package="qemu-guest-agent", release_env="DIB_RELEASE",
    ci_minutes=60, purl=("rpm", "centos"),
    releases=(
        Release("9-stream", f"{_EL9}: the EL9 kernel's filter lists (i6300esb, ib700wdt, iTCO_wdt in "
                            "kernel-core; lpc_ich, under drivers/mfd, in kernel-modules), qemu-kvm's "
                            "qemu-ga sysconfig and unit, kexec-tools' kdump.service"),
        Release("10-stream")),
    mirror_help="replaces the CentOS repositories",
    network="the GenericCloud image from CentOS's cloud image server (unless --base-image), and dnf: "
            "DIB's package update and the watchdog, qemu-guest-agent and kernel-modules packages from the "
            "CentOS repositories (or the --mirror that replaces them)",
    module_packages={"itco": ("kernel-modules",)},
    init_note="centos runs systemd",
    initramfs=(Initramfs.DRACUT,),  # the arming dracut module 04wdimage-watchdog
    kernel_note="CentOS uses its distro kernel", local_image=True,
    drill_agent_warning="this CentOS image's guest agent blocks guest-exec, which the drill needs: rebuild "
                        "it with 'wdimage build centos --drill-agent' (a drill image; build production "
                        "images without it)")
