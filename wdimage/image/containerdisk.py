"""`wdimage build --containerdisk`: the image as a KubeVirt containerDisk, an OCI image archive whose one layer
holds the disk under /disk/ (owned by 107:107, KubeVirt's qemu user, mode 0440) and, for a direct-boot image,
its kernel and initrd under /boot/ (the KubeVirt manifest's kernelBoot reads them from the same image).

Built with umoci (a layout, an unpacked bundle, a repacked layer) and packed into an archive with skopeo: both
maintained tools from Debian's packages, run through wdimage.run. Everything happens in a private directory
inside the build's staging directory, which an interrupted build removes.
"""

import os
import shutil
import tempfile
from pathlib import Path

from wdimage import run

QEMU_UID = 107  # KubeVirt's containerDisk: the disk readable by the qemu user (uid/gid 107)
TAG = "latest"


def archive_name(name: str) -> str:
    return f"{name}.containerdisk.tar"


def write(staging: Path, name: str, image: str, boot_files: tuple[str, ...] = ()) -> str:
    """Pack staging/`image` (and `boot_files`) into staging/NAME.containerdisk.tar; returns its file name."""
    file = archive_name(name)
    with tempfile.TemporaryDirectory(prefix=".containerdisk-", dir=staging) as work:
        layout, bundle = Path(work) / "oci", Path(work) / "bundle"
        rootless = ["--rootless"] if os.geteuid() != 0 else []
        run.run(["umoci", "init", "--layout", layout], capture=True)
        run.run(["umoci", "new", "--image", f"{layout}:{TAG}"], capture=True)
        run.run(["umoci", "unpack", *rootless, "--image", f"{layout}:{TAG}", bundle], capture=True)
        rootfs = bundle / "rootfs"
        _add(rootfs / "disk", staging / image, owner=os.geteuid() == 0)
        for boot in boot_files:
            _add(rootfs / "boot", staging / boot, owner=os.geteuid() == 0)
        run.run(["umoci", "repack", "--image", f"{layout}:{TAG}", bundle], capture=True)
        run.run(["umoci", "config", "--image", f"{layout}:{TAG}", "--config.label",
                 "org.opencontainers.image.title=" + name, "--config.label", "io.kubevirt.containerdisk=" + image],
                capture=True)
        run.run(["skopeo", "copy", "--quiet", f"oci:{layout}:{TAG}", f"oci-archive:{staging / file}:{TAG}"],
                capture=True)
    return file


def _add(directory: Path, source: Path, owner: bool) -> None:
    directory.mkdir(mode=0o755, exist_ok=True)
    target = directory / source.name
    shutil.copyfile(source, target)
    target.chmod(0o440)
    if owner:
        os.chown(target, QEMU_UID, QEMU_UID)
