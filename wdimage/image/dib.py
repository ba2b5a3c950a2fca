"""The only module that invokes diskimage-builder: the command as an object, and what this machine can build.

str(DibCommand) is a copy-pasteable `K=V disk-image-create ...` line; `wdimage build --dry-run` prints it.
"""

import contextlib
import dataclasses
import enum
import fcntl
import os
import platform
import shlex
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Literal

from wdimage import log, run
from wdimage.errors import failure, usage_error
from wdimage.image import dibclean, dibprogress
from wdimage.models import Arch, arch_from_uname, arch_info

# A partitionless image: one ext4 filesystem on the loop device, no kpartx/device-mapper needed.
# The kernel and initrd come out beside it (the `baremetal` element) for QEMU's direct kernel boot.
ROOT_LABEL = "cloudimg-rootfs"
PARTITIONLESS_BLOCK_DEVICE = f"""\
- local_loop:
    name: image0
    size: {{size}}
- mkfs:
    name: mkfs_root
    base: image0
    type: ext4
    label: {ROOT_LABEL}
    mount:
      mount_point: /
      fstab:
        options: "defaults"
        fsck-passno: 1
"""


class Layout(enum.StrEnum):
    DIRECT = "direct"  # partitionless filesystem image, kernel + initrd beside it
    DISK = "disk"  # DIB's normal partitioned disk with a bootloader (the `vm` element)


def device_mapper_works(mapper_control: Path = Path("/dev/mapper/control")) -> bool:
    """kpartx and DIB's partitioned layouts need device-mapper: its control node and `dmsetup`."""
    if not mapper_control.exists() or shutil.which("dmsetup") is None:
        return False
    return run.run(["dmsetup", "version"], capture=True, check=False).returncode == 0


AUTO = "auto"  # `wdimage build --layout auto`: the layout this machine can build (resolve_layout)
LayoutOption = Layout | Literal["auto"]
LAYOUT_CHOICES = (AUTO, *(str(layout) for layout in Layout))  # `wdimage build --layout`


def layout_option(text: str) -> LayoutOption:
    """--layout TEXT as a Layout, or AUTO; exit 2 for anything else."""
    if text == AUTO:
        return AUTO
    try:
        return Layout(text)
    except ValueError:
        raise usage_error(f"--layout {text!r}: expected one of {', '.join(LAYOUT_CHOICES)}") from None


def resolve_layout(option: LayoutOption | str, *, dry_run: bool = False,
                   mapper_control: Path = Path("/dev/mapper/control")) -> tuple[Layout, str]:
    """The layout for `--layout OPTION` and why it was taken, as the build logs it.

    `disk` needs device-mapper (kpartx maps the partitions): without it a real build fails before DIB starts
    rather than in DIB's block-device phase; a dry run only prints the command, so it may ask for either.
    """
    option = layout_option(option)
    works = device_mapper_works(mapper_control)
    if option == AUTO:
        layout = Layout.DISK if works else Layout.DIRECT
        why = "auto: device-mapper works here" if works else "auto: no device-mapper here"
    else:
        layout, why = option, f"--layout {option}"
    if layout is Layout.DISK and not works and not dry_run:
        raise failure("--layout disk needs device-mapper (/dev/mapper/control and a working dmsetup): "
                      "kpartx cannot map the image's partitions here",
                      hint="use --layout direct (a partitionless image booted directly by QEMU)")
    what = ("partitioned disk with a bootloader" if layout is Layout.DISK
            else "partitionless image, direct kernel boot")
    return layout, f"{why}; {what}"


BINFMT_MISC = Path("/proc/sys/fs/binfmt_misc")
QEMU_BINFMT_DIR = Path("/usr/libexec/qemu-binfmt")  # Debian's qemu-user-static interpreters (bookworm)
BINFMT_CONFIG_DIR = Path("/usr/lib/binfmt.d")  # qemu-user-static's registration lines


def foreign_arch_problem(arch: Arch, *, host: str | None = None, binfmt: Path = BINFMT_MISC,
                         interpreters: Path = QEMU_BINFMT_DIR) -> tuple[str, str] | None:
    """Why this machine cannot run `arch`'s binaries in DIB's chroot, and the fix; None when it can (or `arch`
    is the host's). A foreign chroot needs qemu-user-static's interpreter registered with binfmt_misc with the
    F flag (the interpreter opened at registration, so that it works inside the chroot)."""
    host = host or platform.machine()
    if arch_from_uname(host) is arch:
        return None
    uname = arch_info(arch).uname
    interpreter = interpreters / f"{uname}-binfmt-P"
    if not interpreter.exists() and shutil.which(f"qemu-{uname}-static") is None:
        return (f"--arch {arch}: qemu-user-static is not installed (no {interpreter}): this {host} machine cannot "
                f"run {uname} programs in the image's chroot",
                "apt-get install qemu-user-static")
    if not (binfmt / "status").exists():
        return (f"--arch {arch}: binfmt_misc is not mounted ({binfmt} is empty), so the kernel cannot hand "
                f"{uname} programs to qemu-user-static",
                f"mount -t binfmt_misc binfmt_misc {binfmt}")
    entry = binfmt / f"qemu-{uname}"
    try:
        lines = entry.read_text().splitlines()
    except OSError:
        return (f"--arch {arch}: no binfmt_misc entry {entry}: qemu-user-static's interpreter is not registered",
                f"update-binfmts --enable qemu-{uname} (binfmt-support), systemd-binfmt, or "
                f"cat {BINFMT_CONFIG_DIR}/qemu-{uname}.conf > {binfmt}/register")
    if "enabled" not in lines:
        return (f"--arch {arch}: the binfmt_misc entry {entry} is disabled", f"echo 1 > {entry}")
    flags = next((line.split(" ", 1)[1] for line in lines if line.startswith("flags: ")), "")
    if "F" not in flags:
        return (f"--arch {arch}: the binfmt_misc entry {entry} lacks the F flag (flags: {flags or 'none'}): its "
                f"interpreter cannot be found inside the image's chroot",
                f"echo -1 > {entry}; cat {BINFMT_CONFIG_DIR}/qemu-{uname}.conf > {binfmt}/register")
    return None


def layout_elements(layout: Layout) -> tuple[str, ...]:
    return ("vm",) if layout is Layout.DISK else ("baremetal",)


def _venv_bin() -> Path:
    return Path(sys.executable).parent


@dataclasses.dataclass(frozen=True)
class DibCommand:
    """One `disk-image-create` run: its DIB_* environment, elements and output path."""

    env: tuple[tuple[str, str], ...]  # ordered K=V pairs, the DIB_* settings
    elements: tuple[str, ...]
    output: Path  # DIB's -o: the image name without extension
    image_type: str = "qcow2"
    logfile: Path | None = None  # DIB's own log (quiet on stdout); None: DIB logs to stdout
    # zstd-compressed qcow2 clusters: about 3.7x faster to write than zlib here and a little smaller;
    # readable by QEMU 5.1 and later.
    qemu_img_options: str | None = "compression_type=zstd"
    skip_base: bool = False  # -n: leave out DIB's `base` element (iSCSI, software-properties-common)

    def argv(self) -> list[str]:
        options = ["--logfile", str(self.logfile)] if self.logfile else []
        if self.skip_base:
            options.append("-n")
        if self.qemu_img_options and self.image_type == "qcow2":
            options += ["--qemu-img-options", self.qemu_img_options]
        return ["disk-image-create", *options, "-o", str(self.output), "-t", self.image_type, *self.elements]

    def environment(self) -> dict[str, str]:
        """The process environment: ours on top of the caller's, DIB's scripts first on PATH."""
        env = dict(os.environ)
        env["PATH"] = f"{_venv_bin()}{os.pathsep}{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
        env.update(self.env)
        return env

    def __str__(self) -> str:
        assignments = [f"{k}={shlex.quote(v)}" for k, v in self.env]
        return " ".join(assignments + [shlex.join(self.argv())])

    def run(self) -> None:
        """Run DIB in a process group of its own, its temporary directories (TMP_DIR: the build's tmpfs,
        chroot, bind mounts, loop image) in a private directory. Interrupted, DIB gets the signal and
        cleans up (wdimage.run.run_group); afterwards, whatever it left mounted or attached there is
        undone (wdimage.image.dibclean) and the directory removed, on success, failure or interruption alike."""
        env = self.environment()
        with exclusive_image_cache(image_cache_dir(env)):
            scratch = Path(tempfile.mkdtemp(prefix="wdimage-dib-"))
            env["TMP_DIR"] = env["TMPDIR"] = str(scratch)  # DIB's `mktemp -t` prefers TMPDIR to TMP_DIR
            try:
                # With a logfile DIB says little; keep even that off stdout, which `--json` owns.
                # Its phases are shown as they happen, read from its log (wdimage.image.dibprogress).
                follow = dibprogress.follow(self.logfile) if self.logfile else contextlib.nullcontext()
                with tempfile.TemporaryFile("w+") as chatter, follow:
                    code = run.run_group(self.argv(), env=env, output=chatter if self.logfile else None,
                                         spare=("outfilter.py",))  # DIB's log writer: it must outlive DIB
                    chatter.seek(0)
                    said = chatter.read().strip()
            finally:
                dibclean.clean_scratch(scratch)
            if code != 0:
                detail = f"\n{said[-2000:]}" if said else ""
                raise failure(f"command failed with exit code {code}: {shlex.join(self.argv())}{detail}")


def image_cache_dir(env: dict[str, str]) -> Path:
    return Path(env.get("DIB_IMAGE_CACHE") or Path(env.get("HOME") or Path.home()) / ".cache" / "image-create")


@contextlib.contextmanager
def exclusive_image_cache(cache: Path):
    """One DIB run at a time per image cache: concurrent runs fail on its shared apt archive lock."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / "wdimage-dib.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info(f"waiting for another diskimage-builder run using {cache} ...")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version
    try:
        return dist_version("diskimage-builder")
    except PackageNotFoundError:
        return "unknown"
