"""What the drill needs of a `wdimage build` output directory: its Manifest (wdimage.image.manifest), held to
what a drill needs (a guest agent, the files it boots, present), and the Setup it expects of the guest."""

import dataclasses
from pathlib import Path

from wdimage.drill.scenarios import Setup
from wdimage.errors import usage_error
from wdimage.image.manifest import FILE, HINT, HealthRecord, Manifest, read_manifest
from wdimage.models import Action, Arch, Model


@dataclasses.dataclass(frozen=True)
class BuildOutput:
    """A build output directory as the drill sees it: the manifest, the action to drill (the manifest's, or
    --action's) and the files QEMU boots."""

    directory: Path
    manifest: Manifest
    action: Action
    image: Path
    kernel: Path | None = None  # direct kernel boot when set
    initrd: Path | None = None
    seed: Path | None = None  # a cloud-init NoCloud seed attached read-only (files.nocloud_seed)

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def distro(self) -> str:
        return self.manifest.distro

    @property
    def release(self) -> str:
        return self.manifest.release or ""

    @property
    def model(self) -> Model:
        return self.manifest.model

    @property
    def arch(self) -> Arch:
        """The guest's architecture (manifests of x86 builds do not say)."""
        return self.manifest.arch or Arch.X86_64

    @property
    def timeout(self) -> int:
        return self.manifest.timeout

    @property
    def kernel_cmdline(self) -> str | None:
        return self.manifest.kernel_cmdline

    @property
    def health(self) -> HealthRecord | None:
        """The daemon's health tests, as the build recorded them."""
        return self.manifest.health

    @property
    def drill_agent(self) -> bool | None:
        """CentOS: the guest agent allows guest-exec (None: the manifest does not say)."""
        return self.manifest.drill_agent


def load_build(directory: Path) -> BuildOutput:
    """Read DIR/manifest.json and check it for the drill; a usage error (exit 2) names the file and the key."""
    if not directory.is_dir():
        raise usage_error(f"{directory}: not a directory", hint=HINT)
    path = directory / FILE
    manifest = read_manifest(path)

    def need(key: str, kind: str):
        value = getattr(manifest, key)
        if value is None:
            raise usage_error(f"{path}: key {key!r}: expected {kind}, found None")
        return value

    for key, kind in (("model", "str"), ("timeout", "int")):
        need(key, kind)
    if not manifest.agent:
        raise usage_error(f"{path}: key 'agent': the image has no QEMU guest agent; the drill needs it")
    for key, kind in (("boot", "str"), ("files", "dict"), ("name", "str"), ("distro", "str"), ("action", "str")):
        need(key, kind)
    if manifest.direct:
        need("kernel_cmdline", "str")
    return BuildOutput(
        directory=directory, manifest=manifest, action=manifest.action, image=_member(path, manifest, "image"),
        kernel=_member(path, manifest, "kernel") if manifest.direct else None,
        initrd=_member(path, manifest, "initrd", required=False) if manifest.direct else None,
        seed=_member(path, manifest, "nocloud_seed", required=False))


def _member(path: Path, manifest: Manifest, role: str, required: bool = True) -> Path | None:
    """A file the manifest names (the reader checked that it is a plain name inside the directory): present."""
    name = getattr(manifest.files, role)
    where = f"{path}: key 'files.{role}'"
    if name is None:
        if not required:
            return None
        raise usage_error(f"{where}: expected a file name inside the output directory, found None")
    member = path.parent / name
    if not member.is_file():
        raise usage_error(f"{where}: {member}: no such file")
    return member


def setup_from_build(build: BuildOutput) -> Setup:
    return Setup(name=build.name, model=build.model, action=build.action, timeout=build.timeout,
                 health=build.health)
