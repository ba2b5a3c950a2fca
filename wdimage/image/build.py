"""wdimage build: validated settings -> DIB run -> checked, published output directory.

The output directory appears only when the build succeeded: made in a private staging directory beside it and
renamed into place; a previous wdimage output is kept as `<dir>.old` (wdimage.image.outputs).
"""

import dataclasses
import datetime
import hashlib
import json
import re
import shutil
import tempfile
import time
from pathlib import Path

from wdimage import __version__, datadir, log
from wdimage.errors import WdimageError, failure, usage_error
from wdimage.fileio import cache_dir, write_atomically
from wdimage.image import containerdisk, dib, distros, kernel_build, kmodules, outputs, platforms, render
from wdimage.image import health as health_
from wdimage.image.distros import Init, Initramfs, Kernel, apt
from wdimage.image.manifest import FILE, BuildInfo, Files, InstalledPackage, Manifest, Package, health_record
from wdimage.image.render import LibvirtType
from wdimage.kconfig.config import check_config
from wdimage.kconfig.fragments import fragments_dir
from wdimage.models import (
    ARCHES,
    Action,
    Arch,
    Model,
    action_info,
    arch_from_name,
    arch_info,
    info,
    machines_of,
    model_on_arch_error,
    models_on,
)

NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")
RELEASE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,63}")
IMAGE_SIZE = "3GiB"  # the partitionless filesystem; sparse in the qcow2


@dataclasses.dataclass(frozen=True)
class BuildSettings:
    """Everything a build depends on, validated: nothing here can break out of a shell line or config file."""

    distro: str
    release: str
    model: Model
    action: Action
    timeout: int
    name: str
    output: Path
    mirror: str | None = None
    security_mirror: str | None = None
    agent: bool = True
    drill_agent: bool = False  # RPM family: relax the agent's policy so that `wdimage drill` can use it
    kernel: Kernel = Kernel.BIN  # the distro's prebuilt kernel, or compiled on the host (kernel_build.py)
    kernel_source: kernel_build.KernelSource | None = None  # with Kernel.SOURCE
    base_image: Path | None = None  # CentOS: a local cloud image instead of the download, DIB_LOCAL_IMAGE
    ping: tuple[str, ...] = ()
    interfaces: tuple[str, ...] = ()
    max_load_1: int | None = None
    init: Init | None = None  # --init: None keeps the distro's own init system
    initramfs: Initramfs | None = None  # --initramfs: None is the distro's default (its entry's first)
    force: bool = False  # --force: replace --output even when it is not a previous wdimage output
    layout: dib.LayoutOption = dib.AUTO  # --layout: auto (dib.resolve_layout), direct or disk; in the manifest
    libvirt_type: LibvirtType = LibvirtType.KVM  # --libvirt-type: the libvirt domain's type, kvm or qemu (TCG)
    health: health_.HealthSettings = health_.HealthSettings()  # the daemon's health tests (wdimage.image.health)
    containerdisk: bool = False  # --containerdisk: the image as a KubeVirt containerDisk too
    arch: Arch = Arch.X86_64  # --arch: the guest's architecture (a foreign one through qemu-user-static)

    @property
    def spec(self) -> distros.Distro:
        """The distro's registry entry."""
        return distros.get(self.distro)


def make_settings(distro: str, *, release: str | None = None, model: str = "i6300esb", action: str = "reset",
                  timeout: int = 15, name: str | None = None, output: str | Path | None = None,
                  mirror: str | None = None, agent: bool = True, drill_agent: bool = False, kernel: str = "bin",
                  base_image: str | Path | None = None, ping: tuple[str, ...] = (),
                  interfaces: tuple[str, ...] = (), max_load_1: int | None = None, init: str | None = None,
                  initramfs: str | None = None, layout: str = "auto", libvirt_type: str = "kvm",
                  health_options: dict | None = None, force: bool = False, kernel_src: str | Path | None = None,
                  kernel_config: str | Path | None = None, kernel_fragments: tuple[str | Path, ...] = (),
                  apt_sources: tuple[Path, ...] = apt.APT_SOURCES, containerdisk: bool = False,
                  arch: str = "x86_64") -> BuildSettings:
    """Validate the user's options (exit 2 naming the option at fault) before any work."""
    if distro not in distros.DISTROS:
        raise usage_error(f"distro {distro!r} is not one of {', '.join(distros.DISTROS)}")
    spec = distros.get(distro)
    arch_ = arch_from_name(arch)
    if arch_ is None:
        raise usage_error(f"--arch {arch}: expected one of {', '.join(Arch)} "
                          f"(or {', '.join(a for about in ARCHES.values() for a in about.aliases)})")
    if arch_ not in spec.arches:
        raise usage_error(f"--arch {arch_}: wdimage builds {distro} for {', '.join(spec.arches)}")
    model_ = _choice("--model", model, Model)
    if why := model_on_arch_error(model_, arch_):
        raise usage_error(why)
    action_ = _choice("--action", action, Action)
    low, high = info(model_).timeout_range
    if not low <= timeout <= high:
        raise usage_error(f"--timeout {timeout}: {model_} accepts {low}..{high} seconds")
    release = release or spec.default_release
    slash_ok = spec.release_is_path
    if not RELEASE_RE.fullmatch(release) or ".." in release or ("/" in release and not slash_ok):
        raise usage_error(f"--release {release!r}: only letters, digits, '.', '_', '-'"
                          f"{', /' if slash_ok else ''} are allowed")
    distros.check_release(spec, release)
    # DISTRO-MODEL, DISTRO-ARCH-MODEL off x86_64 (the matrix's cell names): an arm64 build never takes the x86 name
    name = name or (f"{distro}-{model_}" if arch_ is Arch.X86_64 else f"{distro}-{arch_}-{model_}")
    if not NAME_RE.fullmatch(name):
        raise usage_error(f"--name {name!r}: use 1-64 letters, digits, '.', '_', '-' (not starting with '.' or '-')")
    if mirror is not None and not distros.MIRROR_RE.fullmatch(mirror):
        raise usage_error(f"--mirror {mirror!r}: expected an http(s)://, ftp:// or file:// URL without spaces or quotes")
    mirror, security = spec.mirrors(mirror, apt_sources)
    if drill_agent and not agent:
        raise usage_error("--drill-agent relaxes the guest agent's policy: it cannot go with --no-agent")
    kernel_ = _choice("--kernel", kernel, Kernel)
    if kernel_ is Kernel.SOURCE and arch_ is not Arch.X86_64:
        raise usage_error(f"--kernel source --arch {arch_}: cross-compiling the guest kernel is not supported yet",
                          hint="use --kernel bin (the distro's kernel), or kernel-config --merge --arch and "
                               "build the kernel yourself")
    source = _kernel_source(spec, kernel_, kernel_src, kernel_config, kernel_fragments)
    init_ = _check_init(spec, init)
    initramfs_ = _check_initramfs(spec, initramfs)
    layout_ = dib.layout_option(layout)
    libvirt_type_ = _choice("--libvirt-type", libvirt_type, LibvirtType)
    base = _base_image(spec, base_image)
    health = health_.make_health(ping=tuple(ping), interfaces=tuple(interfaces), max_load_1=max_load_1,
                                 timeout=timeout, **(health_options or {}))
    out = Path(output) if output else Path("output") / name
    outputs.check_output_dir(out, force)
    return BuildSettings(
        distro=distro, release=release, model=model_, action=action_, timeout=timeout, name=name,
        output=out.absolute(), mirror=mirror, security_mirror=security, agent=agent, drill_agent=drill_agent,
        kernel=kernel_, base_image=base, ping=tuple(ping), interfaces=tuple(interfaces), max_load_1=max_load_1,
        init=init_, initramfs=initramfs_, layout=layout_, libvirt_type=libvirt_type_, health=health, force=force,
        kernel_source=source, containerdisk=containerdisk, arch=arch_)



def _choice(option: str, value: str, kind):
    try:
        return kind(value)
    except ValueError:
        raise usage_error(f"{option} {value!r}: expected one of {', '.join(kind)}") from None


def _kernel_source(spec: distros.Distro, kernel: Kernel, src, config, fragments) -> kernel_build.KernelSource | None:
    if kernel is Kernel.BIN:
        given = [o for o, v in (("--kernel-src", src), ("--config", config), ("--fragment", fragments)) if v]
        if given:
            raise usage_error(f"{', '.join(given)}: only with --kernel source")
        return None
    if spec.kernel_packaging is None:
        raise usage_error(f"--kernel source is for {distros.names(lambda d: d.kernel_packaging)}",
                          hint=spec.kernel_note or None)
    if src is None:
        raise usage_error("--kernel source needs --kernel-src DIR (a clean Linux source tree)")
    return kernel_build.validate_source(src, config, fragments)


def _check_init(spec: distros.Distro, init: str | None) -> Init | None:
    if init is None:
        return None
    init_ = _choice("--init", init, Init)
    if not spec.inits:
        notes = "; ".join(d.init_note for d in distros.DISTROS.values() if d.init_note)
        raise usage_error(f"--init is for {distros.names(lambda d: d.inits)} only", hint=notes or None)
    if init_ not in spec.inits:
        raise usage_error(f"--init {init}: {spec.name} takes {', '.join(spec.inits)}")
    return init_


def _check_initramfs(spec: distros.Distro, initramfs: str | None) -> Initramfs:
    """--initramfs: one of the tools the distro's entry lists (the first without the option)."""
    if initramfs is None:
        return spec.initramfs[0]
    tool = _choice("--initramfs", initramfs, Initramfs)
    if tool not in spec.initramfs:
        raise usage_error(f"--initramfs {initramfs}: {spec.name} takes {', '.join(spec.initramfs)}",
                          hint="; ".join(f"{d.name}: {', '.join(d.initramfs)}" for d in distros.DISTROS.values()))
    return tool


def _base_image(spec: distros.Distro, base_image: str | Path | None) -> Path | None:
    if base_image is None:
        return None
    if not spec.local_image:
        raise usage_error(f"--base-image is for {distros.names(lambda d: d.local_image)} only "
                          f"(DIB's cloud-image path)")
    path = Path(base_image).absolute()
    if not path.is_file():
        raise usage_error(f"--base-image {base_image}: no such file")
    if not re.fullmatch(r"[A-Za-z0-9._/+-]+", str(path)):
        raise usage_error(f"--base-image {base_image}: the path may only contain letters, digits, '.', '_', '+', '-', '/'")
    return path


# --- the DIB command ------------------------------------------------------------------------------------------

def kernel_cmdline(settings: BuildSettings) -> str:
    """Direct boot's command line: never `panic=N` (a self-rebooting kernel would mask the watchdog)."""
    return f"root=LABEL={dib.ROOT_LABEL} ro console={arch_info(settings.arch).console}"


def watchdog_conf(settings: BuildSettings) -> str:
    return render.render_watchdog_conf(render.WatchdogConf(
        settings.model, settings.timeout, **health_.conf_values(settings.health)))


def write_inputs(settings: BuildSettings, layout: dib.Layout, root: Path | None = None) -> dict[str, Path]:
    """The files DIB reads (watchdog.conf, block-device config), content-addressed under the cache so that
    a dry run's printed command works when pasted."""
    files = {"watchdog.conf": watchdog_conf(settings), **health_.input_files(settings.health)}
    if layout is dib.Layout.DIRECT:
        files["block-device.yaml"] = settings.spec.block_device(IMAGE_SIZE)
    contents = {file: data.encode() if isinstance(data, str) else data for file, data in files.items()}
    digest = hashlib.sha256(json.dumps({f: hashlib.sha256(d).hexdigest() for f, d in contents.items()},
                                       sort_keys=True).encode()).hexdigest()[:16]
    directory = (root or cache_dir() / "inputs") / digest
    paths = {}
    for file, data in contents.items():
        paths[file] = directory / file
        if not paths[file].exists() or paths[file].read_bytes() != data:
            paths[file].parent.mkdir(parents=True, exist_ok=True)
            write_atomically(paths[file], data, mode=0o755 if file.startswith("health/") else 0o644)
    return paths


def dib_environment(settings: BuildSettings, inputs: dict[str, Path],
                    kernel: kernel_build.KernelBuild | None = None) -> list[tuple[str, str]]:
    info_ = info(settings.model)
    others = sorted(m.module for m in (info(x) for x in models_on(settings.arch)) if m.module != info_.module)
    spec = settings.spec
    env = [("ELEMENTS_PATH", str(datadir.elements_dir())), (spec.release_env, settings.release)]
    if settings.arch is not Arch.X86_64:  # DIB's ARCH: Debian's name (its default is the host's)
        env.insert(0, ("ARCH", arch_info(settings.arch).debian))
    env += spec.environment(settings)
    if "block-device.yaml" in inputs:
        env.append(("DIB_BLOCK_DEVICE_CONFIG", f"file://{inputs['block-device.yaml']}"))
    env += [
        ("DIB_WATCHDOG_CONF", str(inputs["watchdog.conf"])),
        ("DIB_WATCHDOG_MODULE", info_.module),
        ("DIB_WATCHDOG_BLACKLIST", " ".join(others)),
        ("DIB_WATCHDOG_AGENT", "1" if settings.agent else "0"),
        ("DIB_WATCHDOG_DRILL_AGENT", "1" if settings.drill_agent else "0"),
        ("DIB_WATCHDOG_INITRAMFS_TOOL", str(settings.initramfs or spec.initramfs[0])),
        *health_.dib_environment(settings.health, inputs),
    ]
    env += spec.extra_environment(settings)
    if kernel is not None:
        env += [("DIB_WDIMAGE_KERNEL_DIR", str(kernel.packages)), ("DIB_WDIMAGE_KERNEL_RELEASE", kernel.release),
                ("DIB_BAREMETAL_KERNEL_PATTERN", spec.kernel_file.format(release=kernel.release)),
                ("DIB_BAREMETAL_INITRD_PATTERN", spec.initrd_file.format(release=kernel.release))]
    return env


def init_system(settings: BuildSettings) -> Init:
    """--init, else the release's own (a Gentoo profile decides: distros/gentoo.py). Debian with --init openrc
    gets the debian-openrc element, which sets DIB_INIT_SYSTEM=openrc."""
    return settings.init or settings.spec.init_for(settings.release)


def elements(settings: BuildSettings, layout: dib.Layout) -> tuple[str, ...]:
    spec = settings.spec
    init = spec.inits.get(settings.init, ()) if settings.init else ()
    source = ("wdimage-kernel",) if settings.kernel_source else ()
    return (*spec.elements, *init, *dib.layout_elements(layout), "wdimage-watchdog", *source, "wdimage-slim")


def dib_command(settings: BuildSettings, layout: dib.Layout, inputs: dict[str, Path], image_base: Path,
                logfile: Path | None = None, kernel: kernel_build.KernelBuild | None = None) -> dib.DibCommand:
    return dib.DibCommand(env=tuple(dib_environment(settings, inputs, kernel)),
                          elements=elements(settings, layout), output=image_base, logfile=logfile,
                          skip_base=settings.spec.skip_base)


# --- the build ------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class BuildResult:
    settings: BuildSettings
    layout: dib.Layout
    command: dib.DibCommand
    manifest: Manifest | None = None  # None on a dry run

    def to_dict(self) -> dict:
        return {"command": str(self.command), "layout": str(self.layout), "output": str(self.settings.output),
                "dry_run": self.manifest is None, "manifest": self.manifest.to_json() if self.manifest else None}


def build(settings: BuildSettings, *, dry_run: bool = False, layout: dib.Layout | None = None) -> BuildResult:
    layout, why = (layout, "given") if layout else dib.resolve_layout(settings.layout, dry_run=dry_run)
    log.info(f"layout: {layout} ({why})")
    if not dry_run and (problem := dib.foreign_arch_problem(settings.arch)):
        raise usage_error(problem[0], hint=problem[1])
    inputs = write_inputs(settings, layout)
    settings.spec.log_needs(settings)
    kernel = None
    if settings.kernel_source:
        title = "the kernel, from source" + (" (dry run: configured and proved, not compiled)" if dry_run else "")
        with log.step(title):
            kernel = kernel_build.prepare(settings.kernel_source, settings.model, settings.distro,
                                          compile=not dry_run)
    if dry_run:
        target = settings.output / settings.name
        return BuildResult(settings, layout, dib_command(settings, layout, inputs, target, kernel=kernel))
    started = datetime.datetime.now(datetime.timezone.utc)
    clock = time.monotonic()
    settings.output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{settings.output.name}.partial-", dir=settings.output.parent))
    try:
        logfile = _log_path(settings)
        command = dib_command(settings, layout, inputs, staging / settings.name, logfile, kernel)
        with log.step(f"diskimage-builder: {' '.join(command.elements)} (log: {logfile})"):
            _run_dib(command, logfile)
        with log.step("assembling the output: kernel check, launch stub, libvirt XML, manifest, checksums"):
            manifest = assemble(settings, layout, command, staging, started, time.monotonic() - clock, kernel)
        outputs.publish(staging, settings.output, settings.force)
        log.info(f"published {settings.output}")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return BuildResult(settings, layout, command, manifest)


def _run_dib(command: dib.DibCommand, logfile: Path) -> None:
    """Run DIB; on failure, say where its log is and show the end of it."""
    try:
        command.run()
    except WdimageError as e:
        try:
            tail = "\n".join(logfile.read_text(errors="replace").splitlines()[-12:])
        except OSError:
            tail = "(no log written)"
        raise failure(f"diskimage-builder failed: {e.message}\nlast lines of {logfile}:\n{tail}",
                      hint=f"the full log is {logfile}; nothing was published") from None


def _log_path(settings: BuildSettings) -> Path:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = cache_dir() / "logs" / f"{settings.name}-{stamp}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- assembling the output directory --------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ImageFacts:
    """What the watchdog element recorded inside the image (DIB's manifest directory)."""

    kernel_release: str
    kernel_config: Path
    installed_packages: tuple[InstalledPackage, ...]


def read_image_facts(manifests_dir: Path) -> ImageFacts:
    try:
        release = (manifests_dir / "wdimage-kernel.release").read_text().strip()
        rows = (manifests_dir / "wdimage-packages.tsv").read_text().splitlines()
    except OSError as e:
        raise failure(f"the build left no package/kernel record: {e}",
                      hint="the watchdog element's finalise.d script did not run; see the DIB log") from None
    packages = []
    for row in rows:
        fields = row.split("\t")
        if len(fields) == 3 and fields[0]:
            packages.append(InstalledPackage(*fields))
    return ImageFacts(release, manifests_dir / "wdimage-kernel.config", tuple(packages))


def check_image_kernel(config: Path, model: Model) -> dict:
    """Hold the image's own kernel config against the model's fragment; fail the build when it lacks the driver.

    Fragment paths are recorded relative to the project (kconfig-fragments/NAME), not to this checkout,
    so that builds from different checkouts compare equal.
    """
    report = check_config(config, [model])
    if not report.ok:
        raise failure(f"the image's kernel ({config.name}) cannot drive the {model} watchdog:\n{report.explain()}",
                      hint="choose another --model or a kernel built with the watchdog fragments")
    checkout_prefix = json.dumps(f"{fragments_dir()}/")[1:-1]
    return json.loads(json.dumps(report.to_dict()).replace(checkout_prefix, "kconfig-fragments/"))


def package_versions(settings: BuildSettings, facts: ImageFacts) -> dict[str, Package]:
    """The packages the watchdog setup depends on, by role, with their versions in the image."""
    spec = distros.get(settings.distro)
    by_name = {p.name: p.version for p in facts.installed_packages}
    kernel = spec.kernel_package(facts.kernel_release, settings.kernel)
    roles = {**({"kernel": kernel} if kernel else {}), "watchdog": spec.watchdog_package}
    if settings.agent:
        roles["qemu-guest-agent"] = spec.agent_package
    for package in spec.module_packages.get(str(settings.model), ()):
        roles[package] = package
    missing = [name for name in roles.values() if name not in by_name]
    if missing:
        raise failure(f"the image lacks the package(s) {', '.join(missing)}", hint="see the DIB log")
    return {role: Package(name, by_name[name]) for role, name in roles.items()}


def assemble(settings: BuildSettings, layout: dib.Layout, command: dib.DibCommand, staging: Path,
             started: datetime.datetime, seconds: float, kernel: kernel_build.KernelBuild | None = None) -> Manifest:
    """Turn DIB's output in `staging` into the published layout: image, launch stub, XML, manifest, sums."""
    name = settings.name
    dib_side = staging / f"{name}.d"
    facts = read_image_facts(dib_side / "dib-manifests")
    files = Files(image=f"{name}.qcow2", kernel_config=f"{name}.kernel-config")
    shutil.copyfile(facts.kernel_config, staging / files.kernel_config)
    with log.step(f"checking the image's kernel {facts.kernel_release} for {settings.model}"):
        check = check_image_kernel(staging / files.kernel_config, settings.model)
    check["config"] = files.kernel_config  # relative to the output directory, as every file name here
    if kernel is not None and facts.kernel_release != kernel.release:
        raise failure(f"the image boots kernel {facts.kernel_release}, not {kernel.release} that wdimage compiled",
                      hint="see the DIB log (the wdimage-kernel element)")
    with log.step(f"checking that the image holds the {settings.model} driver's module files"):
        modules = kmodules.check_modules(
            kmodules.ModuleTree.from_records(dib_side / "dib-manifests", facts.kernel_release), settings.model,
            settings.spec.module_hint(settings.model))
    packages = package_versions(settings, facts)
    shutil.rmtree(dib_side)
    direct = layout is dib.Layout.DIRECT
    if direct:
        files = dataclasses.replace(files, kernel=f"{name}.vmlinuz", initrd=f"{name}.initrd")
    files = dataclasses.replace(files, launch_stub=f"run-{name}.sh", libvirt_xml=f"{name}.xml")
    guest = render.GuestFiles(name=name, model=settings.model, action=settings.action, image=files.image,
                              kernel=files.kernel, initrd=files.initrd,
                              cmdline=kernel_cmdline(settings) if direct else None, agent=settings.agent,
                              arch=settings.arch)
    write_atomically(staging / files.launch_stub, render.render_launch_stub(guest), mode=0o755)
    write_atomically(staging / files.libvirt_xml, render.render_libvirt_xml(guest, settings.output,
                                                                              settings.libvirt_type))
    if settings.containerdisk:
        with log.step("the KubeVirt containerDisk (umoci, skopeo)"):
            boot = tuple(f for f in (files.kernel, files.initrd) if f)
            files = dataclasses.replace(files, containerdisk=containerdisk.write(staging, name, files.image, boot))
    files, outcomes = platform_files(guest, staging, files)
    manifest = Manifest(
        name=name, distro=settings.distro, release=settings.release, model=settings.model,
        action=settings.action, timeout=settings.timeout, boot=str(layout),
        machine=machines_of(settings.model, settings.arch)[0], arch=settings.arch,
        kernel_cmdline=guest.cmdline, kernel_release=facts.kernel_release, agent=settings.agent,
        drill_agent=settings.drill_agent, init_system=init_system(settings),
        health=health_record(settings.health), elements=tuple(command.elements), packages=packages,
        installed_packages=facts.installed_packages, kernel_config_check=check, kernel_modules=modules,
        libvirt_type=settings.libvirt_type, openstack_watchdog_action=action_info(settings.action).openstack,
        platforms=outcomes, files=files, checksums={}, kernel_source=kernel.to_manifest() if kernel else None,
        build=BuildInfo(wdimage_version=__version__, dib_version=dib.version(),
                        started=started.isoformat(timespec="seconds"), seconds=round(seconds, 1),
                        layout=str(layout), layout_option=settings.layout))
    return _write_checksums_and_sbom(staging, manifest)


def platform_files(guest: render.GuestFiles, staging: Path, files: Files) -> tuple[Files, dict[str, dict]]:
    """The KubeVirt and Proxmox VE files (wdimage.image.platforms), named in `files`; each one left out is
    said on the build's output, and recorded in the manifest with the reason."""
    roles, outcomes = {}, {}
    for name, (platform, outcome) in platforms.write_platform_files(guest, staging, files.containerdisk).items():
        outcomes[name] = outcome.to_json()
        if outcome.file:
            roles[platform.role] = outcome.file
        else:
            log.info(f"no {platform.title}: {outcome.left_out}")
    return dataclasses.replace(files, **roles), outcomes


def _write_checksums_and_sbom(staging: Path, manifest: Manifest) -> Manifest:
    """Hash the files, write the SBOM (it records the image's checksum), then manifest.json and SHA256SUMS;
    returns the manifest as written."""
    from wdimage.image.sbom import (  # cyclonedx is slow to import: only where it is used
        SBOM_FILE,
        write_sbom,
    )

    checksums = {f: sha256_file(staging / f) for f in sorted(manifest.files.names())}
    manifest = dataclasses.replace(manifest, checksums=checksums)
    write_sbom(manifest, staging / SBOM_FILE)
    manifest = dataclasses.replace(manifest, files=dataclasses.replace(manifest.files, sbom=SBOM_FILE),
                                   checksums={**checksums, SBOM_FILE: sha256_file(staging / SBOM_FILE)})
    text = manifest.write(staging)
    # Every file is hashed once: SHA256SUMS reuses the manifest's checksums.
    sums = {**manifest.checksums, FILE: hashlib.sha256(text.encode()).hexdigest()}
    write_atomically(staging / "SHA256SUMS", "".join(f"{sums[f]}  {f}\n" for f in sorted(sums)))
    return manifest
