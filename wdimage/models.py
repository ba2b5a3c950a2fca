"""The QEMU-emulated watchdog models, the guest architectures and the actions, in tables shared by every command:
each row names the thing in every vocabulary wdimage speaks (kernel, Debian, QEMU, libvirt, OpenStack, KubeVirt,
Proxmox VE); the reverse look-ups are derived here. A new model, architecture or action is one row; the
architectures and machines a model exists on are columns of its row; a platform that cannot express one says why
(`Cannot`)."""

import dataclasses
import enum


class Model(enum.StrEnum):
    I6300ESB = "i6300esb"
    IB700 = "ib700"
    ITCO = "itco"
    DIAG288 = "diag288"
    SBSA_GWDT = "sbsa-gwdt"


class Arch(enum.StrEnum):
    """The guest's architecture (`--arch`), named as `uname -m` names it except arm64 (Debian's and Linux's)."""

    X86_64 = "x86_64"
    ARM64 = "arm64"
    S390X = "s390x"


@dataclasses.dataclass(frozen=True)
class ArchInfo:
    arch: Arch
    kernel_arch: str  # the kernel Makefile's ARCH (SRCARCH is derived from it by wdimage.kconfig.tree)
    debian: str  # Debian's architecture name (dpkg --print-architecture, DIB's ARCH)
    uname: str  # `uname -m` in the guest; the binfmt_misc entry is qemu-<uname> (Debian's qemu-user-static)
    qemu_system: str  # the QEMU system emulator binary
    default_machine: str  # QEMU's machine type when the model does not name one
    cpu_tcg: str | None  # `-cpu` under TCG; None: QEMU's default for the machine
    cpu_kvm: str  # `-cpu` under KVM (libvirt: host-passthrough)
    console: str  # the kernel's console device on the machine's first serial port (console=...)
    cross_compile: str  # CROSS_COMPILE of Debian's cross compiler (gcc-<prefix without the dash>)
    kernel_image: str  # `make` target of the bootable kernel image, under arch/<SRCARCH>/boot/
    virtio_transport: str  # what virtio devices hang off: pci, or ccw (s390x channel I/O)
    acpi: bool  # the machine describes itself with ACPI under direct kernel boot (arm64 virt: device tree)
    aliases: tuple[str, ...] = ()  # other names accepted for --arch (kernel ARCH, Debian's, uname -m)
    firmware: str | None = None  # -bios for a disk image (no direct kernel boot); None: the machine's own
    # QEMU's `-action panic=` where the architecture itself tells the hypervisor about a panic (s390x: the kernel
    # loads a disabled-wait PSW): QEMU's default, shutdown, would end the guest before the watchdog fires
    # (measured: "SHUTDOWN guest-panic" and no WATCHDOG event). None: the guest's panic stays its own.
    panic_action: str | None = None


ARCHES: dict[Arch, ArchInfo] = {a.arch: a for a in [
    ArchInfo(Arch.X86_64, kernel_arch="x86", debian="amd64", uname="x86_64", qemu_system="qemu-system-x86_64",
             default_machine="pc", cpu_tcg=None, cpu_kvm="host", console="ttyS0", cross_compile="x86_64-linux-gnu-",
             kernel_image="bzImage", virtio_transport="pci", acpi=True, aliases=("x86", "amd64")),
    # QEMU's `virt` board: no watchdog of its own, PCIe for i6300esb; -cpu max under TCG (the default cortex-a15
    # is 32-bit). Direct kernel boot needs no firmware; a disk image boots through UEFI (qemu-efi-aarch64).
    ArchInfo(Arch.ARM64, kernel_arch="arm64", debian="arm64", uname="aarch64", qemu_system="qemu-system-aarch64",
             default_machine="virt", cpu_tcg="max", cpu_kvm="host", console="ttyAMA0",
             cross_compile="aarch64-linux-gnu-", kernel_image="Image.gz", virtio_transport="pci", acpi=False,
             aliases=("aarch64",), firmware="/usr/share/qemu-efi-aarch64/QEMU_EFI.fd"),
    ArchInfo(Arch.S390X, kernel_arch="s390", debian="s390x", uname="s390x", qemu_system="qemu-system-s390x",
             default_machine="s390-ccw-virtio", cpu_tcg=None, cpu_kvm="host", console="ttysclp0",
             cross_compile="s390x-linux-gnu-", kernel_image="bzImage", virtio_transport="ccw", acpi=False,
             aliases=("s390",), panic_action="none"),
]}
DEFAULT_ARCH = Arch.X86_64


def arch_info(arch: Arch | str) -> ArchInfo:
    return ARCHES[Arch(arch)]


def arch_from_name(name: str) -> Arch | None:
    """`--arch NAME`: the table's name or an alias (kernel ARCH, Debian's or `uname -m`'s); None if unknown."""
    return next((a.arch for a in ARCHES.values() if name == a.arch or name in a.aliases), None)


def arch_from_uname(machine: str) -> Arch | None:
    return next((a.arch for a in ARCHES.values() if a.uname == machine), None)


class Action(enum.StrEnum):
    """QEMU's `-action watchdog=ACTION` values."""

    RESET = "reset"
    SHUTDOWN = "shutdown"
    POWEROFF = "poweroff"
    PAUSE = "pause"
    DEBUG = "debug"
    NONE = "none"
    INJECT_NMI = "inject-nmi"


@dataclasses.dataclass(frozen=True)
class Cannot:
    """A platform's column where it has no word for the model or action: why (the file is then left out)."""

    why: str


# KubeVirt v1 `spec.domain.devices.watchdog` (api/openapi-spec/swagger.json, v1.Watchdog / v1.I6300ESBWatchdog).
_KUBEVIRT_MODELS = "KubeVirt's watchdog device is i6300esb on x86 (diag288 on s390x) only"
_KUBEVIRT_ACTIONS = "KubeVirt's watchdog actions are poweroff, reset and shutdown only"
# Proxmox VE qm.conf(5) `watchdog: [[model=]<i6300esb|ib700>] [,action=<reset|shutdown|poweroff|pause|debug|none>]`.
_PROXMOX_MODELS = "Proxmox VE's watchdog model is i6300esb or ib700 only (qm.conf(5))"
_PROXMOX_ACTIONS = "Proxmox VE's watchdog action is reset, shutdown, poweroff, pause, debug or none only (qm.conf(5))"


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    model: Model
    kconfig_symbol: str  # the driver's Kconfig symbol, without CONFIG_
    module: str  # the kernel module name
    qemu_device: str | None  # `-device NAME`; None where the machine has it built in
    timeout_range: tuple[int, int]  # seconds the driver accepts
    libvirt_model: str  # libvirt's <watchdog model=>
    fragment: str  # file name in kconfig-fragments/
    identity: str = ""  # what the driver reports in /sys/class/watchdog/watchdogN/identity
    stages: int = 1  # countdowns of the programmed timeout before the reset (the ICH9 TCO counts down twice)
    kubevirt: str | Cannot = Cannot(_KUBEVIRT_MODELS)  # the key under KubeVirt's devices.watchdog
    proxmox: str | Cannot = Cannot(_PROXMOX_MODELS)  # qm.conf's watchdog model=
    # After a fire that does not reset the guest (action none, debug, pause then resume): True where QEMU leaves
    # the device stopped so that a keepalive does not restart it, and only re-opening /dev/watchdog (the driver's
    # start) arms it again; False where the next keepalive re-arms it (see MODELS for QEMU's code).
    reopen_after_fire: bool = False
    bus: str = ""  # how the guest reaches it: PCI, ISA, or the machine's own LPC bridge
    nova: bool = False  # OpenStack Nova's libvirt driver emulates it for hw_watchdog_action (only i6300esb)
    # The architectures the model exists on, each with its QEMU machine types (the first is the default).
    machines: dict[Arch, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    refused: str = ""  # why wdimage does not build or drill it here although it exists (empty: it does)
    logs_bind: bool = True  # the driver prints a line when it binds (False: it prints only its failures)

    @property
    def arches(self) -> tuple[Arch, ...]:
        return tuple(self.machines)

    @property
    def machine(self) -> str:
        """The default machine type on the model's first architecture."""
        return next(iter(self.machines.values()))[0]


# reopen_after_fire, from QEMU 7.2's code:
# - i6300esb (hw/watchdog/wdt_i6300esb.c): after the second stage i6300esb_timer_expired() calls
#   i6300esb_reset(), which clears `enabled`; a keepalive (the reload register) restarts only an enabled timer,
#   and only the driver's start (re-opening /dev/watchdog) sets the enable bit again. Measured (DESIGN.md).
# - ib700 (hw/watchdog/wdt_ib700.c): ib700_timer_expired() deletes the timer, but every keepalive of the
#   ib700wdt driver is a write to the enable port 0x443, whose handler timer_mod()s it again.
# - iTCO (hw/acpi/tco.c): tco_timer_expired() stops the timer after the second countdown, but a write to
#   TCO_RLD (the iTCO_wdt driver's keepalive on the ICH9's TCO v2) reloads it whenever TCO_TMR_HLT is clear and
#   the timer value is above 1 (can_start_tco_timer(); SECOND_TO_STS does not stop it).
MODELS: dict[Model, ModelInfo] = {
    # A PCI device: any x86 machine, and arm64 `virt` over PCIe (QEMU's `virt` has no watchdog of its own).
    Model.I6300ESB: ModelInfo(Model.I6300ESB, "I6300ESB_WDT", "i6300esb", "i6300esb",
                              (1, 2046), "i6300esb", "i6300esb.config", identity="i6300ESB timer",
                              machines={Arch.X86_64: ("pc", "q35"), Arch.ARM64: ("virt",)}, bus="PCI",
                              nova=True, kubevirt="i6300esb", proxmox="i6300esb", reopen_after_fire=True),
    # An ISA device: only the x86 `pc` machine has an ISA bus.
    Model.IB700: ModelInfo(Model.IB700, "IB700_WDT", "ib700wdt", "ib700",
                           (1, 30), "ib700", "ib700.config", identity="IB700 WDT",
                           machines={Arch.X86_64: ("pc",)}, bus="ISA", proxmox="ib700", reopen_after_fire=False),
    # q35's ICH9 LPC bridge has the iTCO watchdog built in; it needs -global ICH9-LPC.noreboot=false.
    Model.ITCO: ModelInfo(Model.ITCO, "ITCO_WDT", "iTCO_wdt", None,
                          (1, 613), "itco", "itco.config", identity="iTCO_wdt", stages=2,
                          machines={Arch.X86_64: ("q35",)}, bus="LPC (built into q35's ICH9)",
                          reopen_after_fire=False),
    # s390x's DIAGNOSE 0x288 timer (QEMU hw/watchdog/wdt_diag288.c): one countdown; Linux's driver accepts
    # 15..3600 s (drivers/watchdog/diag288_wdt.c MIN_INTERVAL, MAX_INTERVAL) and names itself "z Watchdog".
    # After a fire that does not reset, the timer stays enabled: no re-open needed. The driver's init prints only
    # its failures ("The watchdog cannot be activated"): a bound diag288_wdt leaves no line in dmesg.
    Model.DIAG288: ModelInfo(Model.DIAG288, "DIAG288_WATCHDOG", "diag288_wdt", "diag288",
                             (15, 3600), "diag288", "diag288.config", identity="z Watchdog",
                             machines={Arch.S390X: ("s390-ccw-virtio",)}, bus="DIAGNOSE 0x288 (s390x)", kubevirt="diag288",
                             reopen_after_fire=False, logs_bind=False),
    # The SBSA generic watchdog is built into QEMU's `sbsa-ref` board, which boots only through its own
    # firmware (TF-A + EDK2 built for sbsa-ref): libvirt has no model for it either.
    Model.SBSA_GWDT: ModelInfo(Model.SBSA_GWDT, "ARM_SBSA_WATCHDOG", "sbsa_gwdt", None,
                               (1, 3600), "", "sbsa-gwdt.config", identity="SBSA Generic Watchdog", stages=2,
                               machines={Arch.ARM64: ("sbsa-ref",)}, bus="built into sbsa-ref",
                               refused="QEMU's sbsa-ref board boots only through its own firmware (TF-A and EDK2 "
                                       "built for sbsa-ref), which Debian does not package"),
}

# With no --model, the seed article's menu: the core plus both classic drivers (x86).
DEFAULT_MODELS: tuple[Model, ...] = (Model.I6300ESB, Model.IB700)


def info(model: Model | str) -> ModelInfo:
    return MODELS[Model(model)]


def models_on(arch: Arch | str) -> tuple[Model, ...]:
    """The models that exist on `arch`, refused ones included."""
    return tuple(m.model for m in MODELS.values() if Arch(arch) in m.machines)


def default_models(arch: Arch | str = DEFAULT_ARCH) -> tuple[Model, ...]:
    """kernel-config's models when none is named: the seed article's menu on x86, else every model wdimage
    drives on `arch`."""
    if Arch(arch) is Arch.X86_64:
        return DEFAULT_MODELS
    return tuple(m for m in models_on(arch) if not info(m).refused)


def model_on_arch_error(model: Model | str, arch: Arch | str, *, refused_ok: bool = False) -> str | None:
    """Why `model` cannot be used on `arch` (None: it can): the message names the models that can. A refused
    model is let through with `refused_ok` (a kernel config does not depend on the board's firmware)."""
    about, arch = info(model), Arch(arch)
    if arch not in about.machines:
        usable = ", ".join(m for m in models_on(arch) if refused_ok or not info(m).refused) or "none"
        where = ", ".join(str(a) for a in about.arches)
        return f"--model {about.model} does not exist on --arch {arch} (only on {where}); on {arch}: {usable}"
    if about.refused and not refused_ok:
        return f"--model {about.model} is refused: {about.refused}"
    return None


def machines_of(model: Model | str, arch: Arch | str) -> tuple[str, ...]:
    """The QEMU machine types `model` lives on for `arch` (empty: it does not exist there)."""
    return info(model).machines.get(Arch(arch), ())


def model_from_libvirt(name: str) -> Model | None:
    """libvirt's <watchdog model=> as wdimage's model; None for one wdimage does not know."""
    return next((m.model for m in MODELS.values() if m.libvirt_model and m.libvirt_model == name), None)


class Recovery(enum.StrEnum):
    """What becomes of a hung guest when the watchdog fires with an action (the audit's cannot-fire reasons)."""

    ITSELF = "itself"  # the guest boots again by itself
    STOPS = "stops"  # the guest is powered off: down, not hung; whatever restarts domains can start it again
    RESUME = "only-if-resumed"  # paused until someone resumes or resets it; a resumed hung guest is still hung
    NEVER = "never"  # nothing happens that a hung guest could recover from


@dataclasses.dataclass(frozen=True)
class ActionInfo:
    action: Action  # its value is QEMU's word (-action watchdog=, the QMP WATCHDOG event's action)
    effect: str  # what QEMU does when the watchdog fires, and what the user then sees
    recovery: Recovery  # does a hung guest come back after the watchdog fires (and who brings it back)?
    libvirt: str | None  # libvirt's <watchdog action=>; None: libvirt has no such action
    openstack: str | None  # OpenStack's hw_watchdog_action image property; None: no equivalent
    libvirt_event: int  # libvirt's virDomainEventWatchdogAction number in its watchdog event
    libvirt_also: tuple[str, ...] = ()  # other libvirt actions that QEMU carries out as this one
    kubevirt: str | Cannot = Cannot(_KUBEVIRT_ACTIONS)  # KubeVirt's watchdog action
    proxmox: str | Cannot = Cannot(_PROXMOX_ACTIONS)  # qm.conf's watchdog action=

    @property
    def recovers(self) -> bool:
        """Does the guest come back on its own after a crash?"""
        return self.recovery is Recovery.ITSELF

    @property
    def host_acts(self) -> bool:
        """Does the host do something a hung guest gets out of (a reset, or a power-off an orchestrator sees)?"""
        return self.recovery in (Recovery.ITSELF, Recovery.STOPS)


ACTIONS: dict[Action, ActionInfo] = {a.action: a for a in [
    ActionInfo(Action.RESET, "QEMU resets the guest, which boots again", Recovery.ITSELF, "reset", "reset", 2,
               kubevirt="reset", proxmox="reset"),
    ActionInfo(Action.SHUTDOWN, "QEMU sends an ACPI power-button request: a crashed guest cannot obey it and "
                                "stays down", Recovery.NEVER, "shutdown", "poweroff", 4,
               kubevirt="shutdown", proxmox="shutdown"),
    ActionInfo(Action.POWEROFF, "QEMU powers the guest off and exits", Recovery.STOPS, "poweroff", "poweroff", 3,
               kubevirt="poweroff", proxmox="poweroff"),
    # libvirt's "dump" is QEMU's pause, after which libvirt dumps the guest's memory and resumes it.
    ActionInfo(Action.PAUSE, "QEMU pauses the guest (run state 'watchdog') until someone resumes or resets it",
               Recovery.RESUME, "pause", "pause", 1, libvirt_also=("dump",), proxmox="pause"),
    ActionInfo(Action.DEBUG, "QEMU prints a debug message and does nothing else: the guest stays hung",
               Recovery.NEVER, None, None, 5, proxmox="debug"),
    ActionInfo(Action.NONE, "QEMU does nothing but report the event: the guest stays hung", Recovery.NEVER,
               "none", "none", 0, proxmox="none"),
    ActionInfo(Action.INJECT_NMI, "QEMU injects an NMI: a live kernel logs it, a crashed one stays hung",
               Recovery.NEVER,
               "inject-nmi", None, 6),
]}


def action_info(action: Action | str) -> ActionInfo:
    return ACTIONS[Action(action)]


def platform_words(column: str, model: Model | str, action: Action | str) -> tuple[str, str] | Cannot:
    """A platform's (model, action) words, read off the rows' `column` (kubevirt, proxmox); Cannot (why) where
    it has no word for one of them: wdimage never maps it to something else."""
    words = (getattr(info(model), column), getattr(action_info(action), column))
    missing = [f"{value}: {word.why}" for value, word in zip((model, action), words) if isinstance(word, Cannot)]
    return Cannot("; ".join(missing)) if missing else words


def action_from_qemu(word: str | None) -> Action | None:
    """QEMU's word for what it did when the watchdog fired (the QMP WATCHDOG event's action) as an Action; None
    for no word, or for one this wdimage does not know."""
    return next((a for a in Action if a.value == word), None)


def action_from_libvirt(name: str) -> Action | None:
    """libvirt's <watchdog action=> as the QEMU action that carries it out; None for a word libvirt lacks."""
    return next((a.action for a in ACTIONS.values() if name == a.libvirt or name in a.libvirt_also), None)


def action_from_libvirt_event(number: int) -> Action | None:
    """The action in libvirt's watchdog event (virDomainEventWatchdogAction); None for a number not known here."""
    return next((a.action for a in ACTIONS.values() if a.libvirt_event == number), None)


def action_warning(action: Action | str) -> str | None:
    """For a build: a warning when the action cannot bring a crashed guest back, naming the better choice."""
    about = action_info(action)
    if about.recovers:
        return None
    return (f"--action {about.action}: {about.effect}; a crashed guest will not recover by itself "
            f"(use --action reset for that; OpenStack: hw_watchdog_action=reset)")


def timeout_note(model: Model | str, timeout: int) -> str | None:
    """For a build: where the reset comes later than the timeout suggests."""
    stages = info(model).stages
    if stages == 1:
        return None
    return (f"--model {model}: the ICH9 TCO timer counts down {stages} times, so the reset comes about "
            f"{stages * timeout}s after the last keepalive with --timeout {timeout}")
