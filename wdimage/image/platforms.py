"""The platform files every build writes beside the image and its libvirt XML: one row per platform (KubeVirt,
Proxmox VE), each rendered by wdimage.image.render from the same GuestFiles/LaunchSpec. A platform whose words
(the `kubevirt`/`proxmox` columns of wdimage.models) cannot express the build's model or action gets no file:
the manifest's `platforms` and the build's output say why. A new platform is a row in PLATFORMS, a column in
the model and action rows, and a template."""

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path

from wdimage.fileio import write_atomically
from wdimage.image import render
from wdimage.models import Cannot, platform_words

# KubeVirt needs a registry to pull the containerDisk from; this placeholder's domain is reserved
# (RFC 2606 .invalid) so that a manifest applied unchanged can never pull someone else's image.
IMAGE_REF = "registry.invalid/wdimage/{name}:latest"


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One platform's result in a build: the file written, or why it was left out."""

    file: str | None = None
    left_out: str | None = None

    def to_json(self) -> dict:
        return {"file": self.file} if self.file else {"left_out": self.left_out}


def k8s_name(name: str) -> str | Cannot:
    """The build's name as a Kubernetes object name (lower case, '-' for '_' and '.')."""
    candidate = re.sub(r"[_.]", "-", name.lower())
    if not render.K8S_NAME_RE.fullmatch(candidate):
        return Cannot(f"the name {name!r} gives no Kubernetes object name (RFC 1123 label: {candidate!r})")
    return candidate


def _kubevirt(guest: render.GuestFiles, words: tuple[str, str], file: str, containerdisk: str | None) -> str | Cannot:
    name = k8s_name(guest.name)
    if isinstance(name, Cannot):
        return name
    note = (f"{containerdisk} (skopeo copy oci-archive:{containerdisk} docker://REGISTRY/PATH:TAG)" if containerdisk
            else "a containerDisk of the image (wdimage build --containerdisk writes one)")
    return render.render_kubevirt(guest, words, name, IMAGE_REF.format(name=name), file, note)


def _proxmox(guest: render.GuestFiles, words: tuple[str, str], file: str, containerdisk: str | None) -> str:
    return render.render_proxmox(guest, words, file)


@dataclasses.dataclass(frozen=True)
class Platform:
    name: str  # the manifest's key under `platforms`, and the column of the model and action rows
    role: str  # its role in manifest.json's `files`
    file: str  # the file name; {name} is the build's name
    render: Callable[[render.GuestFiles, tuple[str, str], str, str | None], str | Cannot]
    mode: int = 0o644
    title: str = ""


PLATFORMS: tuple[Platform, ...] = (
    Platform("kubevirt", "kubevirt", "{name}.kubevirt.yaml", _kubevirt, title="KubeVirt VirtualMachine"),
    Platform("proxmox", "proxmox", "{name}.proxmox.sh", _proxmox, mode=0o755, title="Proxmox VE import script"),
)


def write_platform_files(guest: render.GuestFiles, directory: Path,
                         containerdisk: str | None = None) -> dict[str, tuple[Platform, Outcome]]:
    """Render every platform's file into `directory`, or record why it is left out."""
    results = {}
    for platform in PLATFORMS:
        file = platform.file.format(name=guest.name)
        words = platform_words(platform.name, guest.model, guest.action)
        text = words if isinstance(words, Cannot) else platform.render(guest, words, file, containerdisk)
        if isinstance(text, Cannot):
            results[platform.name] = (platform, Outcome(left_out=text.why))
            continue
        write_atomically(directory / file, text, mode=platform.mode)
        results[platform.name] = (platform, Outcome(file=file))
    return results
