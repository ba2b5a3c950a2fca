"""`wdimage cloud-init`: #cloud-config user-data that makes a stock cloud VM watchdog-ready at first boot.

The guest side of what `wdimage build` bakes, for VMs people already have: the daemon and the guest agent
installed, watchdog.conf from the build's template and validation (wdimage.image.render, wdimage.image.health),
only the model's driver loaded (modules-load.d) and the other QEMU watchdog drivers blacklisted, systemd's own
watchdog off, the service enabled and started, and a final check that the daemon holds /dev/watchdog: when it
does not, the runcmd fails and `cloud-init status` says error. The hypervisor side (the device and its action)
is the platform's: the user-data names each platform's setting, or why the platform cannot express it.

Not done here, unlike a built image: arming the device from the initramfs (the daemon arms it when its service
starts), masking kdump, removing listeners or root's password (the image is the user's).
"""

import base64
import dataclasses

from wdimage import datadir
from wdimage.image import distros, render
from wdimage.image import health as health_
from wdimage.image.platforms import PLATFORMS
from wdimage.models import Action, Cannot, Model, action_info, info, platform_words

# A family's packages come from the distro entry whose images cover it (wdimage.image.distros).
FAMILIES: dict[str, str] = {
    "debian": "Debian, Ubuntu (apt)",
    "centos": "CentOS Stream, RHEL and its rebuilds, Fedora (dnf)",
    "gentoo": "Gentoo (emerge; OpenRC or systemd)",
}
SETUP_SCRIPT = "/usr/local/sbin/wdimage-cloud-init"
CHECK_SECONDS = 60  # how long the final check waits for the daemon to hold /dev/watchdog


@dataclasses.dataclass(frozen=True)
class CloudInitSettings:
    family: str
    model: Model
    action: Action
    timeout: int
    health: health_.HealthSettings = health_.HealthSettings()


@dataclasses.dataclass(frozen=True)
class GuestFile:
    path: str
    content: str  # text, or base64 when b64
    permissions: str = "0644"
    defer: bool = False  # written after the packages are installed (they ship some of these paths)
    b64: bool = False


@dataclasses.dataclass(frozen=True)
class Plan:
    """What the user-data does, for --json and the template."""

    settings: CloudInitSettings
    packages: tuple[str, ...]
    module: str
    blacklist: tuple[str, ...]
    files: tuple[GuestFile, ...]
    hypervisor: dict[str, str]  # platform -> its setting for the model and action, or why it has none

    def to_json(self) -> dict:
        s = self.settings
        return {"family": s.family, "covers": FAMILIES[s.family], "model": str(s.model), "action": str(s.action),
                "timeout": s.timeout, "packages": list(self.packages), "module": self.module,
                "blacklist": list(self.blacklist),
                "files": [{"path": f.path, "permissions": f.permissions, "after_packages": f.defer}
                          for f in self.files],
                "runcmd": [SETUP_SCRIPT], "check_seconds": CHECK_SECONDS, "hypervisor": self.hypervisor}


def hypervisor_settings(model: Model, action: Action) -> dict[str, str]:
    """Each platform's way of giving the VM this watchdog (the user-data cannot: it is the host's)."""
    about = action_info(action)
    libvirt = (f'<watchdog model="{info(model).libvirt_model}" action="{about.libvirt}"/>' if about.libvirt
               else f"libvirt has no action {action}")
    result = {"qemu": f"-device {info(model).qemu_device} -action watchdog={action}" if info(model).qemu_device
              else f"-machine q35 -global ICH9-LPC.noreboot=false -action watchdog={action}",
              "libvirt": libvirt,
              "openstack": f"hw_watchdog_action={about.openstack}" if about.openstack
              else f"OpenStack has no hw_watchdog_action for {action}"}
    for platform in PLATFORMS:
        words = platform_words(platform.name, model, action)
        result[platform.name] = f"left out: {words.why}" if isinstance(words, Cannot) else {
            "kubevirt": f"spec.domain.devices.watchdog: {{name: watchdog, {words[0]}: {{action: {words[1]}}}}}",
            "proxmox": f"qm set VMID --watchdog model={words[0]},action={words[1]}"}[platform.name]
    return result


def plan(settings: CloudInitSettings) -> Plan:
    spec = distros.get(settings.family)
    module = info(settings.model).module
    others = tuple(sorted(info(m).module for m in Model if info(m).module != module))
    packages = (spec.watchdog_package, spec.agent_package, *spec.module_packages.get(str(settings.model), ()))
    conf = render.render_watchdog_conf(render.WatchdogConf(settings.model, settings.timeout,
                                                           **health_.conf_values(settings.health)))
    blacklist = "".join(f"blacklist {m}\ninstall {m} /bin/false\n" for m in others)
    # The same file the image build installs (elements/wdimage-watchdog/wdimage-files/).
    systemd_off = (datadir.find("elements", "wdimage-watchdog/element-deps") / "wdimage-watchdog" /
                   "wdimage-files" / "wdimage-systemd-watchdog-off.conf").read_text()
    files = [
        GuestFile("/etc/modprobe.d/wdimage-watchdog-blacklist.conf",
                  f"# wdimage: only {module} drives /dev/watchdog in this guest\n{blacklist}"),
        GuestFile("/etc/modules-load.d/wdimage-watchdog.conf", f"{module}\n"),
        GuestFile("/etc/systemd/system.conf.d/50-wdimage-watchdog.conf", systemd_off),
        *(GuestFile(f"{health_.GUEST_DIR}/{name}", base64.b64encode(path.read_bytes()).decode(), "0755", b64=True)
          for name, path in settings.health.binaries().items()),
        GuestFile("/etc/watchdog.conf", conf, defer=True),
        GuestFile(SETUP_SCRIPT, render.render_cloud_init_setup(module, others, CHECK_SECONDS), "0755", defer=True),
    ]
    return Plan(settings, packages, module, others, tuple(files), hypervisor_settings(settings.model,
                                                                                      settings.action))


def user_data(p: Plan) -> str:
    return render.render_cloud_config(p, FAMILIES[p.settings.family], SETUP_SCRIPT)
