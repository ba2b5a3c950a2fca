"""wdimage build: validated settings -> DIB run -> checked, published output directory.

The output directory appears only when the build succeeded: everything is made in a private staging
directory beside it (same filesystem) and renamed into place; a previous output is kept as `<dir>.old`
(wdimage.image.outputs: only a previous wdimage output is ever replaced).
"""

import dataclasses
import datetime
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from wdimage import __version__, datadir, log
from wdimage.errors import WdimageError, failure, usage_error
from wdimage.fileio import cache_dir, write_atomically
from wdimage.image import dib, distro_env, distros, kernel_build, kmodules, outputs, render
from wdimage.image import health as health_
from wdimage.kconfig.config import check_config
from wdimage.kconfig.fragments import fragments_dir
from wdimage.models import Action, Model, info

NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")
RELEASE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,63}")
MIRROR_RE = re.compile(r"(https?|ftp|file)://[A-Za-z0-9._~:/@%+-]+")
KERNEL_CHOICES = ("bin", "source")
INIT_CHOICES = ("systemd", "openrc")  # --init: debian only; OpenRC through the debian-openrc element
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
    kernel: str = "bin"  # the distro's prebuilt kernel (bin) or compiled on the host (source; kernel_build.py)
    kernel_source: kernel_build.KernelSource | None = None  # with kernel == "source"
    base_image: Path | None = None  # CentOS: a local cloud image instead of the download, DIB_LOCAL_IMAGE
    ping: tuple[str, ...] = ()
    interfaces: tuple[str, ...] = ()
    max_load_1: int | None = None
    init: str | None = None  # --init: None keeps the distro's own init system
    force: bool = False  # --force: replace --output even when it is not a previous wdimage output
    layout: str = "auto"  # --layout: auto (dib.choose_layout), direct or disk; recorded in the manifest
    libvirt_type: str = "kvm"  # --libvirt-type: the libvirt domain's type, kvm or qemu (TCG)
    health: health_.HealthSettings = health_.HealthSettings()  # the daemon's health tests (wdimage.image.health)


def make_settings(distro: str, *, release: str | None = None, model: str = "i6300esb", action: str = "reset",
                  timeout: int = 15, name: str | None = None, output: str | Path | None = None,
                  mirror: str | None = None, agent: bool = True, drill_agent: bool = False, kernel: str = "bin",
                  base_image: str | Path | None = None, ping: tuple[str, ...] = (),
                  interfaces: tuple[str, ...] = (), max_load_1: int | None = None, init: str | None = None,
                  layout: str = "auto", libvirt_type: str = "kvm", health_options: dict | None = None,
                  force: bool = False, kernel_src: str | Path | None = None,
                  kernel_config: str | Path | None = None, kernel_fragments: tuple[str | Path, ...] = (),
                  apt_sources: tuple[Path, ...] = distros.APT_SOURCES) -> BuildSettings:
    """Validate the user's options (exit 2 naming the option at fault) before any work."""
    if distro not in distros.DISTROS:
        raise usage_error(f"distro {distro!r} is not one of {', '.join(distros.DISTROS)}")
    spec = distros.get(distro)
    model_ = _choice("--model", model, Model)
    action_ = _choice("--action", action, Action)
    low, high = info(model_).timeout_range
    if not low <= timeout <= high:
        raise usage_error(f"--timeout {timeout}: {model_} accepts {low}..{high} seconds")
    release = release or spec.default_release
    slash_ok = spec.release_env == "GENTOO_PROFILE"  # a profile path; elsewhere a release names files
    if not RELEASE_RE.fullmatch(release) or ".." in release or ("/" in release and not slash_ok):
        raise usage_error(f"--release {release!r}: only letters, digits, '.', '_', '-'"
                          f"{', /' if slash_ok else ''} are allowed")
    distros.check_release(spec, release)
    name = name or f"{distro}-{model_}"
    if not NAME_RE.fullmatch(name):
        raise usage_error(f"--name {name!r}: use 1-64 letters, digits, '.', '_', '-' (not starting with '.' or '-')")
    security = None
    if mirror is not None and not MIRROR_RE.fullmatch(mirror):
        raise usage_error(f"--mirror {mirror!r}: expected an http(s)://, ftp:// or file:// URL without spaces or quotes")
    if distro == "debian":
        mirror, security = _debian_mirrors(mirror, apt_sources)
    if drill_agent and not agent:
        raise usage_error("--drill-agent relaxes the guest agent's policy: it cannot go with --no-agent")
    if kernel not in KERNEL_CHOICES:
        raise usage_error(f"--kernel {kernel!r}: expected one of {', '.join(KERNEL_CHOICES)}")
    source = _kernel_source(distro, kernel, kernel_src, kernel_config, kernel_fragments)
    _check_init(distro, init)
    if layout not in dib.LAYOUT_CHOICES:
        raise usage_error(f"--layout {layout!r}: expected one of {', '.join(dib.LAYOUT_CHOICES)}")
    if libvirt_type not in render.LIBVIRT_TYPES:
        raise usage_error(f"--libvirt-type {libvirt_type!r}: expected one of {', '.join(render.LIBVIRT_TYPES)}")
    base = _base_image(distro, base_image)
    health = health_.make_health(ping=tuple(ping), interfaces=tuple(interfaces), max_load_1=max_load_1,
                                 timeout=timeout, **(health_options or {}))
    out = Path(output) if output else Path("output") / name
    outputs.check_output_dir(out, force)
    return BuildSettings(
        distro=distro, release=release, model=model_, action=action_, timeout=timeout, name=name,
        output=out.absolute(), mirror=mirror, security_mirror=security, agent=agent, drill_agent=drill_agent,
        kernel=kernel, base_image=base, ping=tuple(ping), interfaces=tuple(interfaces), max_load_1=max_load_1,
        init=init, layout=layout, libvirt_type=libvirt_type, health=health, force=force,
        kernel_source=source)


def _debian_mirrors(mirror: str | None, apt_sources: tuple[Path, ...]) -> tuple[str, str]:
    """(mirror, security mirror): --mirror's, or those of Debian's archive in this machine's apt sources."""
    if mirror is not None:
        return mirror, mirror.rstrip("/") + "-security"
    detected, security = distros.debian_mirrors(distros.read_apt_sources(apt_sources))
    if not detected or not MIRROR_RE.fullmatch(detected) or not security or not MIRROR_RE.fullmatch(security):
        where = ", ".join(str(p) for p in apt_sources)
        raise usage_error(f"--mirror is needed: this machine's apt sources ({where}) name no Debian archive "
                          f"to take the mirror from",
                          hint="pass --mirror URL (a Debian mirror; its security archive is taken as URL-security)")
    return detected, security


def _choice(option: str, value: str, kind):
    try:
        return kind(value)
    except ValueError:
        raise usage_error(f"{option} {value!r}: expected one of {', '.join(kind)}") from None


def _kernel_source(distro: str, kernel: str, src, config, fragments) -> kernel_build.KernelSource | None:
    if kernel == "bin":
        given = [o for o, v in (("--kernel-src", src), ("--config", config), ("--fragment", fragments)) if v]
        if given:
            raise usage_error(f"{', '.join(given)}: only with --kernel source")
        return None
    if distro not in ("debian", "gentoo"):
        raise usage_error("--kernel source is for debian and gentoo", hint="CentOS uses its distro kernel")
    if src is None:
        raise usage_error("--kernel source needs --kernel-src DIR (a clean Linux source tree)")
    return kernel_build.validate_source(src, config, fragments)


def _check_init(distro: str, init: str | None) -> None:
    if init is None:
        return
    if init not in INIT_CHOICES:
        raise usage_error(f"--init {init!r}: expected one of {', '.join(INIT_CHOICES)}")
    if distro != "debian":
        raise usage_error("--init is for debian only",
                          hint="centos runs systemd; a gentoo profile decides its own init system")


def _base_image(distro: str, base_image: str | Path | None) -> Path | None:
    if base_image is None:
        return None
    if distro != "centos":
        raise usage_error("--base-image is for centos only (DIB's cloud-image path)")
    path = Path(base_image).absolute()
    if not path.is_file():
        raise usage_error(f"--base-image {base_image}: no such file")
    if not re.fullmatch(r"[A-Za-z0-9._/+-]+", str(path)):
        raise usage_error(f"--base-image {base_image}: the path may only contain letters, digits, '.', '_', '+', '-', '/'")
    return path


# --- the DIB command ------------------------------------------------------------------------------------------

def kernel_cmdline(settings: BuildSettings) -> str:
    """Direct boot's command line: never `panic=N` (a self-rebooting kernel would mask the watchdog)."""
    return f"root=LABEL={dib.ROOT_LABEL} ro console=ttyS0"


def watchdog_conf(settings: BuildSettings) -> str:
    return render.render_watchdog_conf(render.WatchdogConf(
        settings.model, settings.timeout, **health_.conf_values(settings.health)))


def write_inputs(settings: BuildSettings, layout: dib.Layout, root: Path | None = None) -> dict[str, Path]:
    """The files DIB reads (watchdog.conf, block-device config), content-addressed under the cache so that
    a dry run's printed command works when pasted."""
    files = {"watchdog.conf": watchdog_conf(settings), **health_.input_files(settings.health)}
    if layout is dib.Layout.DIRECT:
        files["block-device.yaml"] = distro_env.block_device(settings, IMAGE_SIZE)
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
    others = sorted(m.module for m in (info(x) for x in Model) if m.module != info_.module)
    spec = distros.get(settings.distro)
    env = [("ELEMENTS_PATH", str(datadir.elements_dir())), (spec.release_env, settings.release)]
    if settings.mirror and settings.distro != "gentoo":
        env.append(("DIB_DISTRIBUTION_MIRROR", settings.mirror))
    if settings.security_mirror:
        env.append(("DIB_DEBIAN_SECURITY_MIRROR", settings.security_mirror))
    if settings.base_image:
        env.append(("DIB_LOCAL_IMAGE", str(settings.base_image)))
    if settings.distro == "debian":
        env += debootstrap_cache_env(settings.release)
    if "block-device.yaml" in inputs:
        env.append(("DIB_BLOCK_DEVICE_CONFIG", f"file://{inputs['block-device.yaml']}"))
    env += [
        ("DIB_WATCHDOG_CONF", str(inputs["watchdog.conf"])),
        ("DIB_WATCHDOG_MODULE", info_.module),
        ("DIB_WATCHDOG_BLACKLIST", " ".join(others)),
        ("DIB_WATCHDOG_AGENT", "1" if settings.agent else "0"),
        ("DIB_WATCHDOG_DRILL_AGENT", "1" if settings.drill_agent else "0"),
        *health_.dib_environment(settings.health, inputs),
    ]
    env += distro_env.extra_environment(settings)
    if settings.distro == "gentoo":
        env.append(("DIB_WATCHDOG_GENTOO_KERNEL", settings.kernel))
    if kernel is not None:
        initrd = "initrd.img" if settings.distro == "debian" else "initramfs"
        env += [("DIB_WDIMAGE_KERNEL_DIR", str(kernel.packages)), ("DIB_WDIMAGE_KERNEL_RELEASE", kernel.release),
                ("DIB_BAREMETAL_KERNEL_PATTERN", f"vmlinuz-{kernel.release}"),
                ("DIB_BAREMETAL_INITRD_PATTERN", f"{initrd}-{kernel.release}"
                                                 f"{'.img' if settings.distro == 'gentoo' else ''}")]
    return env


DEBOOTSTRAP_CACHE_MAX_AGE = 7 * 24 * 3600  # seconds: older base tarballs are rebuilt (security updates)


def debootstrap_cache_env(release: str) -> list[tuple[str, str]]:
    """Keep debootstrap's result as a tarball in DIB's image cache and reuse it while it is fresh:
    a warm rebuild skips debootstrap."""
    tarball = dib.image_cache_dir(os.environ) / f"debootstrap-debian-{release}-amd64.tar.gz"
    env = [("DIB_DEBOOTSTRAP_CACHE", "1")]
    try:
        fresh = time.time() - tarball.stat().st_mtime < DEBOOTSTRAP_CACHE_MAX_AGE
    except OSError:
        fresh = False
    if fresh:
        env.append(("DIB_DEBIAN_USE_DEBOOTSTRAP_CACHE", "1"))
    return env


def init_system(settings: BuildSettings) -> str:
    """As DIB decides it: Gentoo's systemd profiles run systemd, its other profiles OpenRC; Debian with
    --init openrc gets the debian-openrc element, which sets DIB_INIT_SYSTEM=openrc."""
    if settings.init:
        return settings.init
    if settings.distro == "gentoo" and "systemd" in settings.release:
        return "systemd"
    return distros.get(settings.distro).init_system


def elements(settings: BuildSettings, layout: dib.Layout) -> tuple[str, ...]:
    init = ("debian-openrc",) if settings.distro == "debian" and settings.init == "openrc" else ()
    source = ("wdimage-kernel",) if settings.kernel_source else ()
    return (*distros.get(settings.distro).elements, *init, *dib.layout_elements(layout), "wdimage-watchdog", *source,
            "wdimage-slim")


def dib_command(settings: BuildSettings, layout: dib.Layout, inputs: dict[str, Path], image_base: Path,
                logfile: Path | None = None, kernel: kernel_build.KernelBuild | None = None) -> dib.DibCommand:
    return dib.DibCommand(env=tuple(dib_environment(settings, inputs, kernel)),
                          elements=elements(settings, layout), output=image_base, logfile=logfile,
                          skip_base=distros.get(settings.distro).skip_base)


# --- the build ------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class BuildResult:
    settings: BuildSettings
    layout: dib.Layout
    command: dib.DibCommand
    manifest: dict | None = None  # None on a dry run

    def to_dict(self) -> dict:
        return {"command": str(self.command), "layout": str(self.layout), "output": str(self.settings.output),
                "dry_run": self.manifest is None, "manifest": self.manifest}


def build(settings: BuildSettings, *, dry_run: bool = False, layout: dib.Layout | None = None) -> BuildResult:
    layout, why = (layout, "given") if layout else dib.resolve_layout(settings.layout, dry_run=dry_run)
    log.info(f"layout: {layout} ({why})")
    inputs = write_inputs(settings, layout)
    distro_env.log_needs(settings)
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

MANIFEST_SCHEMA = 1


@dataclasses.dataclass(frozen=True)
class ImageFacts:
    """What the watchdog element recorded inside the image (DIB's manifest directory)."""

    kernel_release: str
    kernel_config: Path
    installed_packages: list[dict]


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
            packages.append({"name": fields[0], "version": fields[1], "arch": fields[2]})
    return ImageFacts(release, manifests_dir / "wdimage-kernel.config", packages)


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


def package_versions(settings: BuildSettings, facts: ImageFacts) -> dict:
    spec = distros.get(settings.distro)
    by_name = {p["name"]: p["version"] for p in facts.installed_packages}
    kernel = spec.kernel_package(facts.kernel_release, settings.kernel)
    roles = {**({"kernel": kernel} if kernel else {}), "watchdog": spec.watchdog_package}
    if settings.agent:
        roles["qemu-guest-agent"] = spec.agent_package
    for package in spec.module_packages.get(str(settings.model), ()):
        roles[package] = package
    missing = [name for name in roles.values() if name not in by_name]
    if missing:
        raise failure(f"the image lacks the package(s) {', '.join(missing)}", hint="see the DIB log")
    return {role: {"name": name, "version": by_name[name]} for role, name in roles.items()}


def assemble(settings: BuildSettings, layout: dib.Layout, command: dib.DibCommand, staging: Path,
             started: datetime.datetime, seconds: float, kernel: kernel_build.KernelBuild | None = None) -> dict:
    """Turn DIB's output in `staging` into the published layout: image, launch stub, XML, manifest, sums."""
    name = settings.name
    dib_side = staging / f"{name}.d"
    facts = read_image_facts(dib_side / "dib-manifests")
    files = {"image": f"{name}.qcow2", "kernel_config": f"{name}.kernel-config"}
    shutil.copyfile(facts.kernel_config, staging / files["kernel_config"])
    with log.step(f"checking the image's kernel {facts.kernel_release} for {settings.model}"):
        check = check_image_kernel(staging / files["kernel_config"], settings.model)
    check["config"] = files["kernel_config"]  # relative to the output directory, as every file name here
    if kernel is not None and facts.kernel_release != kernel.release:
        raise failure(f"the image boots kernel {facts.kernel_release}, not {kernel.release} that wdimage compiled",
                      hint="see the DIB log (the wdimage-kernel element)")
    with log.step(f"checking that the image holds the {settings.model} driver's module files"):
        modules = kmodules.check_modules(
            kmodules.ModuleTree.from_records(dib_side / "dib-manifests", facts.kernel_release), settings.model,
            distro_env.module_hint(settings))
    packages = package_versions(settings, facts)
    shutil.rmtree(dib_side)
    direct = layout is dib.Layout.DIRECT
    if direct:
        files.update(kernel=f"{name}.vmlinuz", initrd=f"{name}.initrd")
    files.update(launch_stub=f"run-{name}.sh", libvirt_xml=f"{name}.xml")
    guest = render.GuestFiles(name=name, model=settings.model, action=settings.action, image=files["image"],
                              kernel=files.get("kernel"), initrd=files.get("initrd"),
                              cmdline=kernel_cmdline(settings) if direct else None, agent=settings.agent)
    write_atomically(staging / files["launch_stub"], render.render_launch_stub(guest), mode=0o755)
    write_atomically(staging / files["libvirt_xml"], render.render_libvirt_xml(guest, settings.output,
                                                                                     settings.libvirt_type))
    manifest = {
        "schema": MANIFEST_SCHEMA, "name": name, "distro": settings.distro, "release": settings.release,
        "model": str(settings.model), "action": str(settings.action), "timeout": settings.timeout,
        "boot": str(layout), "machine": info(settings.model).machine,
        "kernel_cmdline": guest.cmdline, "kernel_release": facts.kernel_release, "agent": settings.agent,
        "drill_agent": settings.drill_agent, "init_system": init_system(settings),
        "health": health_.manifest_record(settings.health),
        "elements": list(command.elements), "packages": packages,
        "installed_packages": facts.installed_packages, "kernel_config_check": check,
        "kernel_modules": modules,
        "libvirt": {"type": settings.libvirt_type},
        "openstack": {"hw_watchdog_action": render.OPENSTACK_ACTIONS.get(settings.action)},
        "files": files, "checksums": {},
        **({"kernel_source": kernel.to_manifest()} if kernel else {}),
        "build": {"wdimage_version": __version__, "dib_version": dib.version(),
                  "started": started.isoformat(timespec="seconds"), "seconds": round(seconds, 1),
                  "layout": str(layout), "layout_option": settings.layout},
    }
    _write_checksums_and_sbom(staging, manifest)
    return manifest


def _write_checksums_and_sbom(staging: Path, manifest: dict) -> None:
    files = manifest["files"]
    from wdimage.image.sbom import SBOM_FILE, write_sbom  # cyclonedx is slow to import: only where it is used

    checksums = manifest["checksums"] = {f: sha256_file(staging / f) for f in sorted(files.values())}
    write_sbom(manifest, manifest["installed_packages"], staging / SBOM_FILE)  # it records the image's checksum
    files["sbom"] = SBOM_FILE
    checksums[SBOM_FILE] = sha256_file(staging / SBOM_FILE)
    text = json.dumps(manifest, indent=2) + "\n"
    write_atomically(staging / "manifest.json", text)
    # Every file is hashed once: SHA256SUMS reuses the manifest's checksums.
    sums = {**checksums, "manifest.json": hashlib.sha256(text.encode()).hexdigest()}
    write_atomically(staging / "SHA256SUMS", "".join(f"{sums[f]}  {f}\n" for f in sorted(sums)))
