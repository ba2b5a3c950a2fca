"""The elements' phase scripts, each distro branch run for real against a scratch root with stub commands.

The scripts write under DIB_WATCHDOG_ROOT / DIB_SLIM_ROOT; systemctl, rc-update, usermod, install-packages,
depmod, dpkg-query and rpm are stubs that record their arguments. PATH holds only the stubs and the few
coreutils the scripts use, so that the host's own dpkg does not leak into the CentOS and Gentoo branches.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ELEMENTS = Path(__file__).resolve().parents[2] / "elements"
SETUP = ELEMENTS / "watchdog/install.d/75-watchdog-setup"
GENTOO_KERNEL = ELEMENTS / "watchdog/pre-install.d/60-watchdog-gentoo-kernel"
MANIFEST = ELEMENTS / "watchdog/finalise.d/90-watchdog-manifest"
EXTRA_DATA = ELEMENTS / "watchdog/extra-data.d/50-watchdog-conf"
AGENT_POLICY = ELEMENTS / "watchdog/install.d/76-watchdog-agent-policy"
SLIM = ELEMENTS / "wdimage-slim/finalise.d/95-wdimage-slim"
SLIM_INITRD = ELEMENTS / "wdimage-slim/pre-install.d/10-wdimage-slim-initrd"
TOOLS = ("bash", "sed", "find", "sort", "tail", "cp", "mkdir", "basename", "dirname", "install", "rm",
         "touch", "cat", "env", "chmod", "mktemp", "cmp")
STUBS = ("systemctl", "rc-update", "usermod", "install-packages", "depmod", "semodule")

DEBIAN_DEFAULTS = 'run_watchdog=0\nrun_wd_keepalive=1\nwatchdog_module="none"\nwatchdog_options=""\n'


@pytest.fixture
def sandbox(tmp_path):
    """(root, bin dir, calls log): a scratch root and a PATH with stubs."""
    root, bindir, calls = tmp_path / "root", tmp_path / "bin", tmp_path / "calls"
    root.mkdir()
    bindir.mkdir()
    calls.write_text("")
    for tool in TOOLS:
        (bindir / tool).symlink_to(shutil.which(tool))
    for stub in STUBS:
        _stub(bindir, stub, f'echo "{stub} $*" >> "{calls}"')
    (root / "tmp/in_target.d").mkdir(parents=True)
    (root / "tmp/in_target.d/wdimage-watchdog.conf").write_text("watchdog-device = /dev/watchdog\n")
    return root, bindir, calls


def _stub(bindir: Path, name: str, body: str) -> None:
    path = bindir / name
    path.write_text(f"#!/bin/bash\n{body}\n")
    path.chmod(0o755)


def _run(script: Path, sandbox, **env) -> subprocess.CompletedProcess:
    root, bindir, _ = sandbox
    full = {"PATH": str(bindir), "DIB_WATCHDOG_ROOT": str(root), "DIB_SLIM_ROOT": str(root),
            "DIB_WATCHDOG_MODULE": "i6300esb", "DIB_WATCHDOG_BLACKLIST": "iTCO_wdt ib700wdt",
            "DIB_WATCHDOG_AGENT": "1", "DIB_WATCHDOG_GENTOO_KERNEL": "bin", "DIB_MANIFEST_IMAGE_DIR": "/etc/dib-manifests",
            **env}
    return subprocess.run([str(bindir / "bash"), str(script)], env=full, capture_output=True, text=True)


def _calls(sandbox) -> list[str]:
    return sandbox[2].read_text().splitlines()


def test_debian_systemd_branch(sandbox):
    root = sandbox[0]
    (root / "etc/default").mkdir(parents=True)
    (root / "etc/default/watchdog").write_text(DEBIAN_DEFAULTS)
    (root / "lib/systemd/system").mkdir(parents=True)
    (root / "lib/systemd/system/ssh.service").write_text("[Unit]\n")
    (root / "lib/systemd/system/wd_keepalive.service").write_text("[Unit]\n")
    proc = _run(SETUP, sandbox, DISTRO_NAME="debian", DIB_INIT_SYSTEM="systemd")
    assert proc.returncode == 0, proc.stderr
    assert (root / "etc/watchdog.conf").read_text() == "watchdog-device = /dev/watchdog\n"
    assert (root / "etc/modules-load.d/wdimage-watchdog.conf").read_text() == "i6300esb\n"
    blacklist = (root / "etc/modprobe.d/wdimage-watchdog-blacklist.conf").read_text()
    assert "blacklist ib700wdt\ninstall ib700wdt /bin/false\n" in blacklist
    assert "blacklist iTCO_wdt" in blacklist and "blacklist i6300esb" not in blacklist
    system_conf = (root / "etc/systemd/system.conf.d/50-wdimage-watchdog.conf").read_text()
    assert "RuntimeWatchdogSec=0" in system_conf and "RebootWatchdogSec=0" in system_conf
    defaults = (root / "etc/default/watchdog").read_text()
    assert 'watchdog_module="i6300esb"' in defaults and "run_watchdog=1" in defaults
    assert "run_wd_keepalive=0" in defaults
    # Debian's agent starts from its udev rule: no enable; the keepalive that would feed the device after a
    # killed daemon is masked; ssh is present, so it is disabled.
    assert _calls(sandbox) == ["systemctl enable watchdog.service", "systemctl mask wd_keepalive.service",
                               "systemctl disable ssh.service", "usermod -p ! root"]


def test_centos_systemd_branch_enables_agent_and_disables_sshd(sandbox):
    root = sandbox[0]
    (root / "usr/lib/systemd/system").mkdir(parents=True)
    (root / "usr/lib/systemd/system/sshd.service").write_text("[Unit]\n")
    proc = _run(SETUP, sandbox, DISTRO_NAME="centos", DIB_INIT_SYSTEM="systemd", DIB_WATCHDOG_MODULE="ib700wdt",
                DIB_WATCHDOG_BLACKLIST="i6300esb iTCO_wdt")
    assert proc.returncode == 0, proc.stderr
    assert (root / "etc/modules-load.d/wdimage-watchdog.conf").read_text() == "ib700wdt\n"
    assert "blacklist i6300esb" in (root / "etc/modprobe.d/wdimage-watchdog-blacklist.conf").read_text()
    assert not (root / "etc/default/watchdog").exists()
    assert _calls(sandbox) == ["systemctl enable watchdog.service", "systemctl enable qemu-guest-agent.service",
                               "systemctl disable sshd.service", "usermod -p ! root"]


def test_gentoo_openrc_branch(sandbox):
    root = sandbox[0]
    (root / "etc/conf.d").mkdir(parents=True)
    (root / "etc/conf.d/modules").write_text('# modules="foo"\n')
    (root / "etc/runlevels/default").mkdir(parents=True)
    (root / "etc/runlevels/default/sshd").write_text("")
    proc = _run(SETUP, sandbox, DISTRO_NAME="gentoo", DIB_INIT_SYSTEM="openrc")
    assert proc.returncode == 0, proc.stderr
    assert (root / "etc/conf.d/modules").read_text() == '# modules="foo"\nmodules="i6300esb" # wdimage\n'
    assert not (root / "etc/modules-load.d").exists()
    assert not (root / "etc/systemd").exists()
    assert _calls(sandbox) == ["rc-update add modules boot", "rc-update add watchdog default",
                               "rc-update add qemu-guest-agent default", "rc-update del sshd default",
                               "usermod -p ! root"]


LSB_WATCHDOG = "#!/bin/sh\n### BEGIN INIT INFO\n# Provides: watchdog\n### END INIT INFO\n"


def test_debian_openrc_branch(sandbox):
    """Debian booted by OpenRC (the debian-openrc element): kmod loads the module, a native service
    replaces the LSB script, the keepalive leaves the runlevels, and what update-rc.d already linked is
    not added twice."""
    root = sandbox[0]
    (root / "etc/default").mkdir(parents=True)
    (root / "etc/default/watchdog").write_text(DEBIAN_DEFAULTS)
    (root / "etc/init.d").mkdir(parents=True)
    (root / "etc/init.d/watchdog").write_text(LSB_WATCHDOG)
    for level, service in (("default", "watchdog"), ("default", "wd_keepalive"), ("off", "wd_keepalive")):
        (root / "etc/runlevels" / level).mkdir(parents=True, exist_ok=True)
        (root / "etc/runlevels" / level / service).write_text("")
    for _ in range(2):
        proc = _run(SETUP, sandbox, DISTRO_NAME="debian", DIB_INIT_SYSTEM="openrc")
        assert proc.returncode == 0, proc.stderr
    assert (root / "etc/modules-load.d/wdimage-watchdog.conf").read_text() == "i6300esb\n"
    assert not (root / "etc/conf.d").exists() and not (root / "etc/systemd").exists()
    service = (root / "etc/init.d/watchdog").read_text()
    assert service.startswith("#!/sbin/openrc-run\n") and "command=/usr/sbin/watchdog" in service
    assert ". /etc/default/watchdog" in service and 'modprobe "${watchdog_module}"' in service
    assert os.access(root / "etc/init.d/watchdog", os.X_OK)
    # Nothing else in /etc/init.d: OpenRC would take a kept LSB copy for a second "watchdog" provider.
    assert sorted(p.name for p in (root / "etc/init.d").iterdir()) == ["watchdog"]
    defaults = (root / "etc/default/watchdog").read_text()
    assert 'watchdog_module="i6300esb"' in defaults and "run_wd_keepalive=0" in defaults
    once = ["rc-update add kmod sysinit", "rc-update del wd_keepalive default", "rc-update del wd_keepalive off",
            "rc-update add qemu-guest-agent default", "usermod -p ! root"]
    assert _calls(sandbox) == once + once  # the stubs link nothing, so the rerun asks again


# /etc/sysconfig/qemu-ga as the RPM-family packages ship it, one policy variable per generation.
RHEL8_SYSCONFIG = (
    "# This is a systemd environment file, not a shell script.\n"
    "BLACKLIST_RPC=guest-file-open,guest-file-close,guest-file-read,guest-file-write,guest-file-seek,"
    "guest-file-flush,guest-exec,guest-exec-status\n"
    "FSFREEZE_HOOK_PATHNAME=/etc/qemu-ga/fsfreeze-hook\n")
AGENT_POLICIES = [
    (RHEL8_SYSCONFIG,
     RHEL8_SYSCONFIG.replace(",guest-exec,guest-exec-status\n", "\n")),
    ("#BLOCK_RPCS=guest-exec\nBLOCK_RPCS=guest-exec-status,guest-file-open,guest-exec\n",
     "#BLOCK_RPCS=guest-exec\nBLOCK_RPCS=guest-file-open\n"),
    ('FILTER_RPC_ARGS="--allow-rpcs=guest-sync,guest-ping,guest-exec-status"\n',
     'FILTER_RPC_ARGS="--allow-rpcs=guest-sync,guest-ping,guest-exec-status,guest-sync-delimited,guest-exec"\n'),
    ('FILTER_RPC_ARGS="--block-rpcs=guest-exec,guest-exec-status"\n', 'FILTER_RPC_ARGS=""\n'),
    ('QEMU_GA_ARGS="-b guest-file-open,guest-exec,guest-exec-status -F/etc/qemu-ga/fsfreeze-hook"\n',
     'QEMU_GA_ARGS="-b guest-file-open -F/etc/qemu-ga/fsfreeze-hook"\n'),
    ("QEMU_GA_ARGS='-b guest-exec -F/etc/qemu-ga/fsfreeze-hook'\n", "QEMU_GA_ARGS='-F/etc/qemu-ga/fsfreeze-hook'\n"),
]


@pytest.mark.parametrize("shipped, expected", AGENT_POLICIES)
def test_rpm_agent_policy_lets_the_drill_exec_and_keeps_the_rest(sandbox, shipped, expected):
    root = sandbox[0]
    (root / "etc/sysconfig").mkdir(parents=True)
    sysconfig = root / "etc/sysconfig/qemu-ga"
    sysconfig.write_text(shipped)
    for _ in range(2):  # a second run changes nothing more
        proc = _run(AGENT_POLICY, sandbox, DISTRO_NAME="centos")
        assert proc.returncode == 0, proc.stderr
        assert sysconfig.read_text() == expected
    assert _calls(sandbox) == []  # no SELinux config in this root


def test_rpm_agent_policy_makes_only_the_agent_domain_permissive(sandbox):
    root = sandbox[0]
    (root / "etc/sysconfig").mkdir(parents=True)
    (root / "etc/sysconfig/qemu-ga").write_text(RHEL8_SYSCONFIG)
    (root / "etc/selinux").mkdir(parents=True)
    (root / "etc/selinux/config").write_text("SELINUX=enforcing\nSELINUXTYPE=targeted\n")
    proc = _run(AGENT_POLICY, sandbox, DISTRO_NAME="centos")
    assert proc.returncode == 0, proc.stderr
    assert (root / "usr/share/wdimage/wdimage-qemu-ga-permissive.cil").read_text() == \
        "(typepermissive virt_qemu_ga_t)\n"
    assert _calls(sandbox) == ["semodule -i /usr/share/wdimage/wdimage-qemu-ga-permissive.cil"]
    assert (root / "etc/selinux/config").read_text().startswith("SELINUX=enforcing\n")


@pytest.mark.parametrize("agent", ["0", "1"])
def test_agent_policy_leaves_guests_without_the_rpm_policy_alone(sandbox, agent):
    root = sandbox[0]
    (root / "etc/selinux").mkdir(parents=True)
    (root / "etc/selinux/config").write_text("SELINUX=enforcing\n")
    if agent == "0":  # the agent left out: its shipped policy, if any, is not touched
        (root / "etc/sysconfig").mkdir(parents=True)
        (root / "etc/sysconfig/qemu-ga").write_text(RHEL8_SYSCONFIG)
    proc = _run(AGENT_POLICY, sandbox, DISTRO_NAME="debian", DIB_WATCHDOG_AGENT=agent)
    assert proc.returncode == 0, proc.stderr
    assert _calls(sandbox) == [] and not (root / "usr/share/wdimage").exists()
    if agent == "0":
        assert (root / "etc/sysconfig/qemu-ga").read_text() == RHEL8_SYSCONFIG


def test_gentoo_rerun_does_not_duplicate_the_modules_line(sandbox):
    root = sandbox[0]
    for _ in range(2):
        assert _run(SETUP, sandbox, DISTRO_NAME="gentoo", DIB_INIT_SYSTEM="openrc",
                    DIB_WATCHDOG_AGENT="0").returncode == 0
    assert (root / "etc/conf.d/modules").read_text() == 'modules="i6300esb" # wdimage\n'
    assert "rc-update add qemu-guest-agent default" not in _calls(sandbox)


@pytest.mark.parametrize("module", ["i6300esb;reboot", "$(id)", "a b"])
def test_setup_refuses_a_module_name_that_is_not_a_name(sandbox, module):
    proc = _run(SETUP, sandbox, DISTRO_NAME="debian", DIB_INIT_SYSTEM="systemd", DIB_WATCHDOG_MODULE=module)
    assert proc.returncode != 0 and "invalid module name" in proc.stderr
    assert not (sandbox[0] / "etc/watchdog.conf").exists()


def test_unknown_init_system_fails(sandbox):
    proc = _run(SETUP, sandbox, DISTRO_NAME="debian", DIB_INIT_SYSTEM="upstart")
    assert proc.returncode != 0 and "not supported" in proc.stderr


def test_gentoo_source_kernel_keeps_the_prebuilt_kernel_out(sandbox):
    root = sandbox[0]
    proc = _run(GENTOO_KERNEL, sandbox, DISTRO_NAME="gentoo", DIB_WATCHDOG_GENTOO_KERNEL="source")
    assert proc.returncode == 0, proc.stderr
    assert "sys-kernel/gentoo-kernel-bin-9999" in (root / "etc/portage/profile/package.provided").read_text()
    assert _calls(sandbox) == []  # nothing compiled in the chroot: the host compiled it (wdimage-kernel element)


@pytest.mark.parametrize("distro,kernel", [("gentoo", "bin"), ("debian", "source")])
def test_gentoo_kernel_script_does_nothing_otherwise(sandbox, distro, kernel):
    proc = _run(GENTOO_KERNEL, sandbox, DISTRO_NAME=distro, DIB_WATCHDOG_GENTOO_KERNEL=kernel)
    assert proc.returncode == 0, proc.stderr
    assert not (sandbox[0] / "etc/portage").exists() and _calls(sandbox) == []


def _boot_config(root: Path, *releases: str) -> None:
    (root / "boot").mkdir(exist_ok=True)
    for release in releases:
        (root / f"boot/config-{release}").write_text(f"# {release}\nCONFIG_WATCHDOG=y\n")


def test_manifest_from_dpkg(sandbox):
    root, bindir, _ = sandbox
    _stub(bindir, "dpkg-query", "printf 'watchdog\\t5.16-1+b2\\tamd64\\nlibc6:amd64\\t2.36-9\\tamd64\\n'")
    _boot_config(root, "6.1.0-9-amd64", "6.1.0-56-amd64")
    proc = _run(MANIFEST, sandbox)
    assert proc.returncode == 0, proc.stderr
    out = root / "etc/dib-manifests"
    assert (out / "wdimage-packages.tsv").read_text() == "watchdog\t5.16-1+b2\tamd64\nlibc6\t2.36-9\tamd64\n"
    assert (out / "wdimage-kernel.release").read_text() == "6.1.0-56-amd64\n"  # the newest, by version
    assert (out / "wdimage-kernel.config").read_text().startswith("# 6.1.0-56-amd64")


def test_manifest_from_rpm(sandbox):
    root, bindir, _ = sandbox
    _stub(bindir, "rpm", "printf 'watchdog\\t5.16-5.el9\\tx86_64\\nkernel-core\\t5.14.0-500.el9\\tx86_64\\n'")
    _boot_config(root, "5.14.0-500.el9.x86_64")
    assert _run(MANIFEST, sandbox).returncode == 0
    assert (root / "etc/dib-manifests/wdimage-packages.tsv").read_text() == (
        "kernel-core\t5.14.0-500.el9\tx86_64\nwatchdog\t5.16-5.el9\tx86_64\n")


def test_manifest_from_gentoo_vdb(sandbox):
    root = sandbox[0]
    for atom in ("sys-apps/watchdog-5.16", "sys-kernel/gentoo-kernel-bin-6.6.47-r1", "dev-lang/python-3.12.5_p1"):
        (root / "var/db/pkg" / atom).mkdir(parents=True)
    _boot_config(root, "6.6.47-gentoo-dist")
    assert _run(MANIFEST, sandbox).returncode == 0
    assert (root / "etc/dib-manifests/wdimage-packages.tsv").read_text() == (
        "dev-lang/python\t3.12.5_p1\tamd64\nsys-apps/watchdog\t5.16\tamd64\n"
        "sys-kernel/gentoo-kernel-bin\t6.6.47-r1\tamd64\n")


def test_manifest_without_a_kernel_config_fails(sandbox):
    root, bindir, _ = sandbox
    _stub(bindir, "rpm", "true")
    (root / "boot").mkdir()
    proc = _run(MANIFEST, sandbox)
    assert proc.returncode != 0 and "no /boot/config-*" in proc.stderr


def test_extra_data_requires_the_rendered_conf(sandbox, tmp_path):
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    proc = _run(EXTRA_DATA, sandbox, TMP_HOOKS_PATH=str(hooks), DIB_WATCHDOG_CONF="")
    assert proc.returncode != 0 and "DIB_WATCHDOG_CONF" in proc.stderr
    conf = tmp_path / "watchdog.conf"
    conf.write_text("watchdog-device = /dev/watchdog\n")
    proc = _run(EXTRA_DATA, sandbox, TMP_HOOKS_PATH=str(hooks), DIB_WATCHDOG_CONF=str(conf))
    assert proc.returncode == 0, proc.stderr
    assert (hooks / "wdimage-watchdog.conf").read_text() == conf.read_text()


def test_slim_removes_docs_and_unneeded_drivers_but_keeps_copyright(sandbox):
    root = sandbox[0]
    doc = root / "usr/share/doc/watchdog"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text("GPL")
    (doc / "changelog.gz").write_text("x")
    (root / "usr/share/man/man8").mkdir(parents=True)
    for lang in ("de", "en"):
        (root / f"usr/share/locale/{lang}").mkdir(parents=True)
    (root / "etc/dpkg/dpkg.cfg.d").mkdir(parents=True)
    kernel = root / "lib/modules/6.1.0-56-amd64/kernel"
    for tree in ("drivers/gpu/drm", "drivers/watchdog", "sound/core", "drivers/net/wireless"):
        (kernel / tree).mkdir(parents=True)
    proc = _run(SLIM, sandbox)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in doc.iterdir()) == ["copyright"]
    assert not (root / "usr/share/man").exists()
    assert sorted(p.name for p in (root / "usr/share/locale").iterdir()) == ["en"]
    assert (kernel / "drivers/watchdog").is_dir()
    assert not (kernel / "drivers/gpu").exists() and not (kernel / "sound").exists()
    assert not (kernel / "drivers/net/wireless").exists()
    assert "path-exclude=/usr/share/doc/*" in (root / "etc/dpkg/dpkg.cfg.d/wdimage-slim").read_text()
    assert _calls(sandbox) == [f"depmod -b {root} -a 6.1.0-56-amd64"]


@pytest.mark.parametrize("distro,expected", [("debian", True), ("centos", False), ("gentoo", False)])
def test_slim_initrd_is_set_up_before_the_kernel_on_debian(sandbox, distro, expected):
    root = sandbox[0]
    assert _run(SLIM_INITRD, sandbox, DISTRO_NAME=distro).returncode == 0
    conf = root / "etc/initramfs-tools/conf.d/wdimage-slim"
    assert conf.exists() is expected
    if expected:
        assert conf.read_text() == "MODULES=list\n"
        modules = (root / "usr/share/initramfs-tools/modules.d/wdimage-slim").read_text().split()
        assert {"virtio_pci", "virtio_blk", "ext4"} <= set(modules)
        assert not (root / "etc/initramfs-tools/modules").exists()  # the package's conffile stays its own
    assert _run(SLIM_INITRD, sandbox, DISTRO_NAME="debian", DIB_SLIM_INITRD="0").returncode == 0
    assert conf.exists() is expected


def test_slim_can_keep_everything(sandbox):
    root = sandbox[0]
    (root / "usr/share/man/man8").mkdir(parents=True)
    (root / "lib/modules/6.1/kernel/sound").mkdir(parents=True)
    assert _run(SLIM, sandbox, DIB_SLIM_DOCS="0", DIB_SLIM_KERNEL_MODULES="0").returncode == 0
    assert _calls(sandbox) == []
    assert (root / "usr/share/man/man8").is_dir() and (root / "lib/modules/6.1/kernel/sound").is_dir()


def _scripts() -> list[Path]:
    return sorted(p for p in ELEMENTS.glob("*/*.d/*") if p.is_file() and os.access(p, os.X_OK))


def test_shellcheck_passes_on_every_phase_script():
    if not shutil.which("shellcheck"):
        pytest.fail("shellcheck not installed: run 'make deps'")
    env_files = sorted(ELEMENTS.glob("*/environment.d/*"))
    proc = subprocess.run(["shellcheck", "-s", "bash", *map(str, _scripts() + env_files)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_dib_lint_passes(tmp_path):
    dib_lint = Path(os.sys.executable).parent / "dib-lint"
    lib = tmp_path / "lib"
    lib.mkdir()
    env = {**os.environ, "ELEMENTS_DIR": "elements", "LIB_DIR": str(lib),
           "PATH": f"{dib_lint.parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run([str(dib_lint)], cwd=ELEMENTS.parent, env=env, capture_output=True, text=True)
    assert proc.returncode == 0 and "PASS" in proc.stdout, proc.stdout + proc.stderr


# --- wdimage-kernel: the kernel compiled on the host, installed the distribution's way -------------------------

KERNEL_EXTRA = ELEMENTS / "wdimage-kernel/extra-data.d/50-wdimage-kernel"
KERNEL_INSTALL = ELEMENTS / "wdimage-kernel/install.d/80-wdimage-kernel"
KREL = "6.1.192-wdimage-0123abcd"


def _kernel_sandbox(sandbox, *tools: str):
    root, bindir, _ = sandbox
    for tool in ("grep", *tools):
        if not (bindir / tool).exists():
            (bindir / tool).symlink_to(shutil.which(tool))
    (root / "tmp/in_target.d/wdimage-kernel").mkdir(parents=True)
    return root / "tmp/in_target.d/wdimage-kernel"


def test_kernel_extra_data_copies_exactly_the_release_package(sandbox, tmp_path):
    hooks, packages = tmp_path / "hooks", tmp_path / "packages"
    hooks.mkdir()
    packages.mkdir()
    env = {"TMP_HOOKS_PATH": str(hooks), "DIB_WDIMAGE_KERNEL_DIR": str(packages), "DIB_WDIMAGE_KERNEL_RELEASE": KREL}
    proc = _run(KERNEL_EXTRA, sandbox, **env)
    assert proc.returncode != 0 and "expected one kernel package" in proc.stderr and "found 0" in proc.stderr
    deb = packages / f"linux-image-{KREL}_{KREL}-1_amd64.deb"
    deb.write_text("deb")
    assert _run(KERNEL_EXTRA, sandbox, **env).returncode == 0
    assert (hooks / "wdimage-kernel" / deb.name).read_text() == "deb"
    bad = _run(KERNEL_EXTRA, sandbox, **{**env, "DIB_WDIMAGE_KERNEL_RELEASE": "6.1; reboot"})
    assert bad.returncode != 0 and "must be a kernel release" in bad.stderr


def test_kernel_element_does_nothing_without_a_kernel(sandbox, tmp_path):
    for script in (KERNEL_EXTRA, KERNEL_INSTALL):
        proc = _run(script, sandbox, DISTRO_NAME="debian", TMP_HOOKS_PATH=str(tmp_path), DIB_WDIMAGE_KERNEL_DIR="",
                    DIB_WDIMAGE_KERNEL_RELEASE="")
        assert proc.returncode == 0, proc.stderr
    assert _calls(sandbox) == []


def test_kernel_debian_installs_the_package_and_purges_the_distro_kernels(sandbox):
    root, bindir, calls = sandbox
    packages = _kernel_sandbox(sandbox)
    (packages / f"linux-image-{KREL}_{KREL}-1_amd64.deb").write_text("deb")
    (root / "boot").mkdir()
    # dpkg -i runs the package's postinst: initramfs-tools' hook writes the initrd.
    _stub(bindir, "dpkg", f'echo "dpkg $*" >> "{calls}"; touch "{root}/boot/initrd.img-{KREL}"')
    _stub(bindir, "dpkg-query", f"printf 'linux-image-6.1.0-28-amd64\\nlinux-image-{KREL}\\nlinux-image-amd64\\n'")
    _stub(bindir, "apt-get", f'echo "apt-get $*" >> "{calls}"')
    proc = _run(KERNEL_INSTALL, sandbox, DISTRO_NAME="debian", DIB_WDIMAGE_KERNEL_DIR="/host/dir",
                DIB_WDIMAGE_KERNEL_RELEASE=KREL, DIB_WDIMAGE_KERNEL_ROOT=str(root))
    assert proc.returncode == 0, proc.stderr
    assert _calls(sandbox) == [
        "install-packages initramfs-tools kmod",
        f"dpkg -i {packages}/linux-image-{KREL}_{KREL}-1_amd64.deb",
        "apt-get -y purge linux-image-6.1.0-28-amd64 linux-image-amd64",
    ]


def test_kernel_debian_fails_when_no_initrd_was_built(sandbox):
    root, bindir, calls = sandbox
    packages = _kernel_sandbox(sandbox)
    (packages / f"linux-image-{KREL}_{KREL}-1_amd64.deb").write_text("deb")
    _stub(bindir, "dpkg", "true")
    _stub(bindir, "dpkg-query", f"echo linux-image-{KREL}")
    proc = _run(KERNEL_INSTALL, sandbox, DISTRO_NAME="debian", DIB_WDIMAGE_KERNEL_DIR="/host/dir",
                DIB_WDIMAGE_KERNEL_RELEASE=KREL, DIB_WDIMAGE_KERNEL_ROOT=str(root))
    assert proc.returncode != 0 and f"did not build /boot/initrd.img-{KREL}" in proc.stderr


def test_kernel_gentoo_unpacks_the_tarball_and_builds_a_dracut_initramfs(sandbox, tmp_path):
    root, bindir, calls = sandbox
    packages = _kernel_sandbox(sandbox, "tar")
    stage = tmp_path / "stage"
    (stage / "boot").mkdir(parents=True)
    (stage / f"boot/vmlinuz-{KREL}").write_text("kernel")
    (stage / f"lib/modules/{KREL}/kernel/drivers/watchdog").mkdir(parents=True)
    (stage / f"lib/modules/{KREL}/kernel/drivers/watchdog/i6300esb.ko").write_text("ko")
    subprocess.run(["tar", "-cf", str(packages / f"linux-{KREL}-x86.tar"), "-C", str(stage), "boot", "lib"],
                   check=True)
    # Gentoo's merged /usr: /lib is a symlink that the tarball must not replace.
    (root / "usr/lib").mkdir(parents=True)
    (root / "lib").symlink_to("usr/lib")
    _stub(bindir, "dracut", f'echo "dracut $*" >> "{calls}"')
    proc = _run(KERNEL_INSTALL, sandbox, DISTRO_NAME="gentoo", DIB_WDIMAGE_KERNEL_DIR="/host/dir",
                DIB_WDIMAGE_KERNEL_RELEASE=KREL, DIB_WDIMAGE_KERNEL_ROOT=str(root))
    assert proc.returncode == 0, proc.stderr
    assert (root / f"boot/vmlinuz-{KREL}").read_text() == "kernel"
    assert (root / "lib").is_symlink()
    assert (root / f"usr/lib/modules/{KREL}/kernel/drivers/watchdog/i6300esb.ko").is_file()
    assert _calls(sandbox) == [f"depmod -b {root} -a {KREL}", "install-packages sys-kernel/dracut",
                               f"dracut --force --kver {KREL} {root}/boot/initramfs-{KREL}.img"]
