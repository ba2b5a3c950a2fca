"""The elements' phase scripts, each distro branch run for real against a scratch root with stub commands.

The scripts write under DIB_WDIMAGE_TEST_ROOT; systemctl, rc-update, usermod, install-packages,
depmod, dpkg-query and rpm are stubs that record their arguments. PATH holds only the stubs and the few
coreutils the scripts use, so that the host's own dpkg does not leak into the CentOS and Gentoo branches.
"""

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import diskimage_builder
import pytest

from wdimage import datadir

ELEMENTS = Path(__file__).resolve().parents[2] / "elements"
SETUP = ELEMENTS / "wdimage-watchdog/install.d/75-wdimage-watchdog-setup"
GENTOO_KERNEL = ELEMENTS / "wdimage-watchdog/pre-install.d/60-wdimage-watchdog-gentoo-kernel"
MANIFEST = ELEMENTS / "wdimage-watchdog/finalise.d/90-wdimage-watchdog-manifest"
MODULES = ELEMENTS / "wdimage-watchdog/finalise.d/97-wdimage-watchdog-modules"
GENTOO_KEYWORDS = ELEMENTS / "wdimage-watchdog/pre-install.d/55-wdimage-watchdog-gentoo-keywords"
EXTRA_DATA = ELEMENTS / "wdimage-watchdog/extra-data.d/50-wdimage-watchdog-conf"
AGENT_POLICY = ELEMENTS / "wdimage-watchdog/install.d/76-wdimage-watchdog-agent-policy"
SLIM = ELEMENTS / "wdimage-slim/finalise.d/95-wdimage-slim"
SLIM_INITRD = ELEMENTS / "wdimage-slim/pre-install.d/10-wdimage-slim-initrd"
TOOLS = ("bash", "sed", "find", "sort", "tail", "cp", "mkdir", "basename", "dirname", "install", "rm",
         "touch", "cat", "env", "chmod", "mktemp", "cmp", "grep")
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
    full = {"PATH": str(bindir), "DIB_WDIMAGE_TEST_ROOT": str(root),
            "DIB_WATCHDOG_MODULE": "i6300esb", "DIB_WATCHDOG_BLACKLIST": "iTCO_wdt ib700wdt",
            "DIB_WATCHDOG_AGENT": "1", "DIB_WATCHDOG_GENTOO_KERNEL": "bin", "DIB_MANIFEST_IMAGE_DIR": "/etc/dib-manifests",
            **env}
    return subprocess.run([str(bindir / "bash"), str(script)], env=full, capture_output=True, text=True)


def _calls(sandbox) -> list[str]:
    return sandbox[2].read_text().splitlines()


# The fixed guest files in each element's wdimage-files/, by element path: the sha256 of the bytes the scripts wrote from
# heredocs and printf before the files moved into the elements (a040e49), so that a change to one is deliberate.
GUEST_FILE_SHA256 = {
    "wdimage-network/wdimage-files/wdimage-dhcp.interfaces":
        "052dc518e549c31d0eec722ca29727a24cd481b007852656e73da72d69d1d7dd",
    "wdimage-network/wdimage-files/wdimage-dhcp.network": "b5e5f1221aa613e1930fcac52afa73932961041b13504b96bae7400b240fceb2",
    "wdimage-slim/wdimage-files/wdimage-slim.dpkg.cfg": "fcca557ec5cc4d935b00e205493231fe8adfe593fd01f2939a08bbc86b292829",
    "wdimage-slim/wdimage-files/wdimage-slim-initramfs.conf":
        "2e705f849e972f114914702a5ce93aba91b48b26b85a8ebe4abb166ca6f81e32",
    "wdimage-slim/wdimage-files/wdimage-slim-initramfs.modules":
        "c6df1716dfac65a12c5c27409a7687b676c8dec971dc5b746012426a21ebe984",
    "wdimage-watchdog/wdimage-files/wdimage-dracut-arm.sh":
        "f9fee4b9081256fb6056e9e31597526d5649c8b529f05f6114cc5b7bef5986a4",
    "wdimage-watchdog/wdimage-files/wdimage-dracut-module-setup.sh":
        "0d36fd706ffe11ac756e6467f44bb6c8aa2c618ae8dc338639398cd903e4d5e4",
    "wdimage-watchdog/wdimage-files/wdimage-dracut.conf":
        "b20a9980c06036e90ef4490a2a4feeede5fed530355ef5c714f42d127ce64aa7",
    "wdimage-watchdog/wdimage-files/wdimage-example.openrc": "a15562f39eb4606fc95c58e2ee0c43ca691aa91b59b9ccfd5bb9d4e419f208dd",
    "wdimage-watchdog/wdimage-files/wdimage-example.service":
        "36512f4502c383c89cdaf6572c13cf9a0c935959a1d75b2726deb24fb1c3f2fd",
    "wdimage-watchdog/wdimage-files/wdimage-keepalive.openrc":
        "726d9f9d1dd9c868fb80807cb140dbf57f84940bb888a8c0cb8beae5b20ce42f",
    "wdimage-watchdog/wdimage-files/wdimage-keepalive.service":
        "608e5fb8e69aee5d6a5664ed2144f5c475d5701a2803d23a27a172e730bad4d1",
    "wdimage-watchdog/wdimage-files/wdimage-qemu-ga-permissive.cil":
        "1cc68c393f2d2e8fe689c9756bcfe52002f1572349e7cde0aa6a5c9157bcd0f4",
    "wdimage-watchdog/wdimage-files/wdimage-stamp-armed.sh": "2489c251824d56bb92ad3d41c2a3f2116b39cd5ad436c1b2056cfe7dc7e5b732",
    "wdimage-watchdog/wdimage-files/wdimage-systemd-watchdog-off.conf":
        "1191d82b187e743db778d4123742e2b9ab28c1c1837af1e8b0376c55faa0b9da",
    "wdimage-watchdog/wdimage-files/wdimage-take-over-keepalive.sh":
        "25315728d4879d23334c4f4f33b6f06d9667d4e6ab6dd16d51fb12e832f97242",
    "wdimage-watchdog/wdimage-files/wdimage-watchdog.openrc":
        "9587ab68a47576877f591a364ccafc13fa961f42f209fc0c83a3061c3fc28b87",
}


def assert_installed(root: Path, guest: str, element_file: str, mode: int) -> None:
    """The guest file is the element's file byte for byte, the bytes the script wrote before, with `mode`."""
    installed = root / guest
    assert installed.read_bytes() == (ELEMENTS / element_file).read_bytes(), guest
    assert hashlib.sha256(installed.read_bytes()).hexdigest() == GUEST_FILE_SHA256[element_file], guest
    assert installed.stat().st_mode & 0o7777 == mode, f"{guest}: {oct(installed.stat().st_mode)}"


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


def test_setup_installs_its_guest_files_as_before(sandbox):
    root = sandbox[0]
    assert _run(SETUP, sandbox, DISTRO_NAME="debian", DIB_INIT_SYSTEM="systemd").returncode == 0
    assert_installed(root, "etc/systemd/system.conf.d/50-wdimage-watchdog.conf",
                     "wdimage-watchdog/wdimage-files/wdimage-systemd-watchdog-off.conf", 0o644)
    (root / "etc/init.d").mkdir(parents=True)
    (root / "etc/init.d/watchdog").write_text(LSB_WATCHDOG)  # Debian's LSB script, replaced
    assert _run(SETUP, sandbox, DISTRO_NAME="debian", DIB_INIT_SYSTEM="openrc").returncode == 0
    assert_installed(root, "etc/init.d/watchdog", "wdimage-watchdog/wdimage-files/wdimage-watchdog.openrc", 0o755)


UPSTREAM = Path(__file__).resolve().parents[1] / "fixtures/upstream"  # README.md there names each file's source
RHEL8_SYSCONFIG = (UPSTREAM / "el8/qemu-ga.sysconfig").read_text()  # BLACKLIST_RPC=
RHEL9_SYSCONFIG = (UPSTREAM / "el9/qemu-ga.sysconfig").read_text()  # BLOCK_RPCS= (9.0-9.3)
FILE_RPCS = "guest-file-open,guest-file-close,guest-file-read,guest-file-write,guest-file-seek,guest-file-flush"
AGENT_POLICIES = [
    (RHEL8_SYSCONFIG, RHEL8_SYSCONFIG.replace(f"BLACKLIST_RPC={FILE_RPCS},guest-exec,guest-exec-status\n",
                                              f"BLACKLIST_RPC={FILE_RPCS}\n")),
    (RHEL9_SYSCONFIG, RHEL9_SYSCONFIG.replace(f"BLOCK_RPCS={FILE_RPCS},guest-exec,guest-exec-status\n",
                                              f"BLOCK_RPCS={FILE_RPCS}\n")),
    ("#BLOCK_RPCS=guest-exec\nBLOCK_RPCS=guest-exec-status,guest-file-open,guest-exec\n",
     "#BLOCK_RPCS=guest-exec\nBLOCK_RPCS=guest-file-open\n"),
    # RHEL 9.4+ and CentOS Stream 10 ship an allow list in FILTER_RPC_ARGS; no copy of that file was reachable
    # from here, so these lines are written in its form (see tests/fixtures/upstream/README.md).
    ('FILTER_RPC_ARGS="--allow-rpcs=guest-sync,guest-ping,guest-exec-status"\n',
     'FILTER_RPC_ARGS="--allow-rpcs=guest-sync,guest-ping,guest-exec-status,guest-sync-delimited,guest-exec"\n'),
    ('FILTER_RPC_ARGS="--block-rpcs=guest-exec,guest-exec-status"\n', 'FILTER_RPC_ARGS=""\n'),
]


def test_upstream_units_read_the_variables_the_policy_script_rewrites():
    unit = (UPSTREAM / "el9/qemu-guest-agent.service").read_text()
    assert "EnvironmentFile=/etc/sysconfig/qemu-ga" in unit and "--block-rpcs=${BLOCK_RPCS}" in unit
    assert "\nBLOCK_RPCS=" in RHEL9_SYSCONFIG and "\nBLACKLIST_RPC=" in RHEL8_SYSCONFIG
    script = AGENT_POLICY.read_text()
    assert "QEMU_GA_ARGS" not in script  # no RHEL or CentOS release ships it
    for name in ("BLACKLIST_RPC", "BLOCK_RPCS", "FILTER_RPC_ARGS"):
        assert name in script


@pytest.mark.parametrize("shipped, expected", AGENT_POLICIES)
def test_rpm_agent_policy_lets_the_drill_exec_and_keeps_the_rest(sandbox, shipped, expected):
    root = sandbox[0]
    (root / "etc/sysconfig").mkdir(parents=True)
    sysconfig = root / "etc/sysconfig/qemu-ga"
    sysconfig.write_text(shipped)
    for _ in range(2):  # a second run changes nothing more
        proc = _run(AGENT_POLICY, sandbox, DISTRO_NAME="centos", DIB_WATCHDOG_DRILL_AGENT="1")
        assert proc.returncode == 0, proc.stderr
        assert sysconfig.read_text() == expected
    assert _calls(sandbox) == []  # no SELinux config in this root


def test_without_drill_agent_the_rpm_agent_keeps_its_policy(sandbox):
    """The default build (no --drill-agent) leaves CentOS's agent as the distribution ships it."""
    root = sandbox[0]
    (root / "etc/sysconfig").mkdir(parents=True)
    (root / "etc/sysconfig/qemu-ga").write_text(RHEL9_SYSCONFIG)
    (root / "etc/selinux").mkdir(parents=True)
    (root / "etc/selinux/config").write_text("SELINUX=enforcing\nSELINUXTYPE=targeted\n")
    for env in ({}, {"DIB_WATCHDOG_DRILL_AGENT": "0"}):
        proc = _run(AGENT_POLICY, sandbox, DISTRO_NAME="centos", **env)
        assert proc.returncode == 0, proc.stderr
    assert (root / "etc/sysconfig/qemu-ga").read_text() == RHEL9_SYSCONFIG
    assert _calls(sandbox) == [] and not (root / "usr/share/wdimage").exists()


def test_rpm_agent_policy_makes_only_the_agent_domain_permissive(sandbox):
    root = sandbox[0]
    (root / "etc/sysconfig").mkdir(parents=True)
    (root / "etc/sysconfig/qemu-ga").write_text(RHEL8_SYSCONFIG)
    (root / "etc/selinux").mkdir(parents=True)
    (root / "etc/selinux/config").write_text("SELINUX=enforcing\nSELINUXTYPE=targeted\n")
    proc = _run(AGENT_POLICY, sandbox, DISTRO_NAME="centos", DIB_WATCHDOG_DRILL_AGENT="1")
    assert proc.returncode == 0, proc.stderr
    assert (root / "usr/share/wdimage/wdimage-qemu-ga-permissive.cil").read_text() == \
        "(typepermissive virt_qemu_ga_t)\n"
    assert_installed(root, "usr/share/wdimage/wdimage-qemu-ga-permissive.cil",
                     "wdimage-watchdog/wdimage-files/wdimage-qemu-ga-permissive.cil", 0o644)
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
    proc = _run(AGENT_POLICY, sandbox, DISTRO_NAME="debian", DIB_WATCHDOG_AGENT=agent, DIB_WATCHDOG_DRILL_AGENT="1")
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
    assert_installed(root, "etc/dpkg/dpkg.cfg.d/wdimage-slim", "wdimage-slim/wdimage-files/wdimage-slim.dpkg.cfg", 0o644)
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
        assert_installed(root, "etc/initramfs-tools/conf.d/wdimage-slim",
                         "wdimage-slim/wdimage-files/wdimage-slim-initramfs.conf", 0o644)
        assert_installed(root, "usr/share/initramfs-tools/modules.d/wdimage-slim",
                         "wdimage-slim/wdimage-files/wdimage-slim-initramfs.modules", 0o644)
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
    return datadir.runnable_scripts(ELEMENTS)


def _guest_files() -> list[Path]:
    """The fixed guest files (each element's wdimage-files/), which the phase scripts install into the guest."""
    return sorted(p for p in ELEMENTS.glob("*/wdimage-files/*") if p.is_file())


def test_phase_scripts_carry_their_element_name_and_are_bash():
    for script in _scripts():
        assert re.fullmatch(rf"[0-9]{{2}}-{re.escape(script.parent.parent.name)}(-[a-z0-9-]+)?", script.name), script
        assert script.read_text().startswith("#!/bin/bash\n") and os.access(script, os.X_OK), script


def test_guest_files_are_installed_by_their_elements_scripts_and_never_run():
    """The guest files live outside the phase directories, so dib-run-parts never runs them; DIB copies every
    element subdirectory into one hooks directory (and stops on a duplicated name), so each name is used by one
    element only, ours or DIB's; a phase script of the same element installs each ("${files}/NAME")."""
    guest = _guest_files()
    assert [p.relative_to(ELEMENTS).as_posix() for p in guest] == sorted(GUEST_FILE_SHA256)
    installed = {script.parent.parent / "wdimage-files" / name for script in _scripts()
                 for name in re.findall(r'"\$\{files\}/([^"]+)"', script.read_text())}
    assert installed == set(guest)
    dib = Path(diskimage_builder.__file__).parent / "elements"
    assert not list(dib.glob("*/wdimage-files"))
    for path in guest:
        same_name = list(ELEMENTS.glob(f"*/wdimage-files/{path.name}"))
        assert same_name == [path], same_name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == GUEST_FILE_SHA256[path.relative_to(ELEMENTS).as_posix()]


def test_shellcheck_passes_on_the_guest_shell_scripts():
    """The guest's /bin/sh and openrc-run scripts, as sh. openrc-run reads the variables a service sets
    (description, command, pidfile: SC2034); /etc/default/watchdog exists only in the guest (SC1091). dracut's
    module-setup.sh, as bash (dracut sources it into its bash)."""
    scripts = [p for p in _guest_files() if p.read_bytes().startswith(b"#!")]
    assert {p.read_text().splitlines()[0] for p in scripts} == {"#!/bin/sh", "#!/sbin/openrc-run", "#!/bin/bash"}
    for shell, first in (("sh", ("#!/bin/sh", "#!/sbin/openrc-run")), ("bash", ("#!/bin/bash",))):
        chosen = [p for p in scripts if p.read_text().splitlines()[0] in first]
        proc = subprocess.run(["shellcheck", "-s", shell, "-e", "SC2034,SC1091", *map(str, chosen)],
                              capture_output=True, text=True)
        assert chosen and proc.returncode == 0, proc.stdout


def test_shellcheck_passes_on_every_phase_script():
    if not shutil.which("shellcheck"):
        pytest.fail("shellcheck not installed: run 'make deps'")
    env_files = sorted(ELEMENTS.glob("*/environment.d/*"))
    proc = subprocess.run(["shellcheck", "-s", "bash", *map(str, _scripts() + env_files)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_every_script_takes_its_scratch_root_from_one_variable():
    """The tests point every element at a scratch root through DIB_WDIMAGE_TEST_ROOT alone."""
    import re  # noqa: PLC0415
    roots = {name for script in _scripts() for name in re.findall(r"\bDIB_\w*ROOT\b", script.read_text())}
    assert roots == {"DIB_WDIMAGE_TEST_ROOT"}


def test_dib_lint_passes(tmp_path):
    dib_lint = Path(os.sys.executable).parent / "dib-lint"
    lib = tmp_path / "lib"
    lib.mkdir()
    env = {**os.environ, "ELEMENTS_DIR": "elements", "LIB_DIR": str(lib),
           "PATH": f"{dib_lint.parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run([str(dib_lint)], cwd=ELEMENTS.parent, env=env, capture_output=True, text=True)
    assert proc.returncode == 0 and "PASS" in proc.stdout, proc.stdout + proc.stderr


# --- kdump ---------------------------------------------------------------------------------------------------------

# /etc/default/grub in the form EL9's installer writes it, with the crashkernel= value RHEL 9's kexec-tools
# defaults to (written here, not a copy).
EL9_GRUB = (
    'GRUB_TIMEOUT=5\nGRUB_DISTRIBUTOR="$(sed \'s, release .*$,,g\' /etc/system-release)"\n'
    'GRUB_CMDLINE_LINUX="console=tty0 console=ttyS0,115200n8 no_timer_check net.ifnames=0 '
    'crashkernel=1G-4G:192M,4G-64G:256M,64G-:512M"\nGRUB_ENABLE_BLSCFG=true\n')
BLS_ENTRY = ("title CentOS Stream (5.14.0-362.el9.x86_64) 9\nlinux /boot/vmlinuz-5.14.0-362.el9.x86_64\n"
             "options root=UUID=0 console=ttyS0 crashkernel=1G-4G:192M,4G-64G:256M,64G-:512M no_timer_check\n")


def test_centos_image_disables_kdump_and_its_crash_kernel_reservation(sandbox):
    """A loaded crash kernel takes over on a panic: the guest would dump and reboot without the watchdog."""
    root = sandbox[0]
    units = root / "usr/lib/systemd/system"
    units.mkdir(parents=True)
    for unit in ("kdump.service", "watchdog.service"):
        (units / unit).write_text((UPSTREAM / "el9" / unit).read_text())
    (root / "etc/default").mkdir(parents=True)
    (root / "etc/default/grub").write_text(EL9_GRUB)
    (root / "boot/loader/entries").mkdir(parents=True)
    entry = root / "boot/loader/entries/0-5.14.0-362.el9.x86_64.conf"
    entry.write_text(BLS_ENTRY)
    proc = _run(SETUP, sandbox, DISTRO_NAME="centos", DIB_INIT_SYSTEM="systemd")
    assert proc.returncode == 0, proc.stderr
    calls = _calls(sandbox)
    assert "systemctl disable kdump.service" in calls and "systemctl mask kdump.service" in calls
    grub = (root / "etc/default/grub").read_text()
    assert "crashkernel" not in grub
    assert 'GRUB_CMDLINE_LINUX="console=tty0 console=ttyS0,115200n8 no_timer_check net.ifnames=0"' in grub
    assert entry.read_text() == BLS_ENTRY.replace(" crashkernel=1G-4G:192M,4G-64G:256M,64G-:512M", "")
    assert "crashkernel= removed from /etc/default/grub" in proc.stdout


def test_kdump_left_alone_where_there_is_none(sandbox):
    proc = _run(SETUP, sandbox, DISTRO_NAME="debian", DIB_INIT_SYSTEM="systemd")
    assert proc.returncode == 0, proc.stderr
    assert not any("kdump" in call for call in _calls(sandbox))


# --- the driver's module file in the image ----------------------------------------------------------------------------

def _module_root(root: Path, release: str, present: tuple[str, ...], dep: str) -> Path:
    base = root / "lib/modules" / release
    base.mkdir(parents=True)
    (base / "modules.dep").write_text(dep)
    (base / "modules.builtin").write_text("kernel/drivers/watchdog/watchdog.ko\n")
    for path in present:
        (base / path).parent.mkdir(parents=True, exist_ok=True)
        (base / path).write_bytes(b"\x7fELF")
    return base


ITCO_DEP = ("kernel/drivers/watchdog/iTCO_wdt.ko: kernel/drivers/watchdog/iTCO_vendor_support.ko\n"
            "kernel/drivers/watchdog/iTCO_vendor_support.ko:\nkernel/drivers/mfd/lpc_ich.ko:\n"
            "kernel/drivers/watchdog/i6300esb.ko:\n")


def test_module_records_pass_the_check_when_the_files_are_there(sandbox):
    from wdimage.image import kmodules
    from wdimage.models import Model
    root, bindir, _ = sandbox
    release = "6.1.0-56-amd64"
    _boot_config(root, release)
    _stub(bindir, "dpkg-query", "true")
    present = ("kernel/drivers/watchdog/iTCO_wdt.ko", "kernel/drivers/watchdog/iTCO_vendor_support.ko",
               "kernel/drivers/mfd/lpc_ich.ko", "kernel/drivers/watchdog/i6300esb.ko")
    _module_root(root, release, present, ITCO_DEP)
    for script in (MANIFEST, MODULES):
        proc = _run(script, sandbox)
        assert proc.returncode == 0, proc.stderr
    records = root / "etc/dib-manifests"
    assert (records / "wdimage-modules.files").read_text().splitlines() == sorted([
        "kernel/drivers/mfd/lpc_ich.ko", "kernel/drivers/watchdog/i6300esb.ko",
        "kernel/drivers/watchdog/iTCO_vendor_support.ko", "kernel/drivers/watchdog/iTCO_wdt.ko"])
    for tree in (kmodules.ModuleTree.from_records(records, release), kmodules.ModuleTree.from_root(root, release)):
        assert set(kmodules.check_modules(tree, Model.ITCO)["modules"]) == {"iTCO_wdt", "lpc_ich"}


@pytest.mark.parametrize("absent,named", [
    ("kernel/drivers/mfd/lpc_ich.ko", "lpc_ich: kernel/drivers/mfd/lpc_ich.ko listed in modules.dep but absent"),
    ("kernel/drivers/watchdog/iTCO_vendor_support.ko", "iTCO_wdt: kernel/drivers/watchdog/iTCO_vendor_support.ko"),
])
def test_a_module_file_absent_from_the_root_fails_with_a_clear_message(sandbox, absent, named):
    from wdimage.errors import ExitCode, WdimageError
    from wdimage.image import kmodules
    from wdimage.models import Model
    root, bindir, _ = sandbox
    release = "6.1.0-56-amd64"
    _boot_config(root, release)
    _stub(bindir, "dpkg-query", "true")
    every = ("kernel/drivers/watchdog/iTCO_wdt.ko", "kernel/drivers/watchdog/iTCO_vendor_support.ko",
             "kernel/drivers/mfd/lpc_ich.ko")
    _module_root(root, release, tuple(p for p in every if p != absent), ITCO_DEP)
    for script in (MANIFEST, MODULES):
        assert _run(script, sandbox).returncode == 0
    for tree in (kmodules.ModuleTree.from_records(root / "etc/dib-manifests", release),
                 kmodules.ModuleTree.from_root(root, release)):
        with pytest.raises(WdimageError) as e:
            kmodules.check_modules(tree, Model.ITCO)
        assert e.value.code == ExitCode.FAILED and named in e.value.message
        assert f"/lib/modules/{release}" in e.value.message


def test_module_records_of_a_kernel_without_modules(sandbox):
    root, bindir, _ = sandbox
    _boot_config(root, "6.6.47-gentoo-dist")
    _stub(bindir, "dpkg-query", "true")
    assert _run(MANIFEST, sandbox).returncode == 0
    proc = _run(MODULES, sandbox)
    assert proc.returncode == 0 and "has no modules" in proc.stderr
    assert (root / "etc/dib-manifests/wdimage-modules.dep").read_text() == ""


def test_el9_kernel_filter_puts_lpc_ich_in_kernel_modules_and_the_element_installs_it(tmp_path):
    """Run the EL9 kernel's own filter script over our modules' paths: what lands outside kernel-core is
    exactly what the wdimage-watchdog element's pkg-map and the distro table install for CentOS."""
    import json

    import yaml

    from wdimage.image import distros
    for name in ("filter-modules.sh.rhel", "filter-x86_64.sh.rhel"):
        shutil.copy(UPSTREAM / "el9" / name, tmp_path / name.replace(".rhel", ""))
    ours = ["kernel/drivers/watchdog/i6300esb.ko", "kernel/drivers/watchdog/ib700wdt.ko",
            "kernel/drivers/watchdog/iTCO_wdt.ko", "kernel/drivers/watchdog/iTCO_vendor_support.ko",
            "kernel/drivers/mfd/lpc_ich.ko"]
    (tmp_path / "modules.list").write_text("\n".join(ours) + "\n")
    subprocess.run(["bash", "filter-modules.sh", "modules.list", "x86_64"], cwd=tmp_path, check=True,
                   capture_output=True)
    core = (tmp_path / "modules.list").read_text().split()
    modules_pkg = (tmp_path / "k-d.list").read_text().split()
    assert modules_pkg == ["kernel/drivers/mfd/lpc_ich.ko"] and "kernel/drivers/mfd/lpc_ich.ko" not in core
    extra = (UPSTREAM / "el9/mod-extra.list.rhel").read_text().split()
    assert not {Path(p).name for p in ours} & set(extra)  # nothing of ours in kernel-modules-extra
    # So: i6300esb and ib700 need nothing beyond kernel-core; itco needs kernel-modules.
    pkg_map = json.loads((ELEMENTS / "wdimage-watchdog/pkg-map").read_text())
    assert pkg_map["family"]["redhat"]["kernel-modules-itco"] == "kernel-modules"
    assert pkg_map["default"]["kernel-modules-itco"] == ""
    installs = yaml.safe_load((ELEMENTS / "wdimage-watchdog/package-installs.yaml").read_text())
    assert installs["kernel-modules-itco"] == {"when": "DIB_WATCHDOG_MODULE = iTCO_wdt"}
    assert distros.get("centos").module_packages == {"itco": ("kernel-modules",)}


# --- Gentoo's keywords ------------------------------------------------------------------------------------------------

def _keywords(ebuild: str) -> list[str]:
    line = next(l for l in (UPSTREAM / "gentoo" / ebuild).read_text().splitlines() if l.startswith("KEYWORDS="))
    return line.split("=", 1)[1].strip('"').split()


def test_gentoo_accepts_the_agents_testing_keyword_for_it_alone(sandbox):
    # Upstream: 8.2.0 is stable on amd64, 10.2.3 testing only; watchdog is stable.
    assert "amd64" in _keywords("qemu-guest-agent-8.2.0.ebuild")
    assert "amd64" not in _keywords("qemu-guest-agent-10.2.3.ebuild")
    assert "~amd64" in _keywords("qemu-guest-agent-10.2.3.ebuild")
    assert "amd64" in _keywords("watchdog-5.16-r1.ebuild")
    root = sandbox[0]
    proc = _run(GENTOO_KEYWORDS, sandbox, DISTRO_NAME="gentoo", ARCH="amd64")
    assert proc.returncode == 0, proc.stderr
    accepted = (root / "etc/portage/package.accept_keywords/wdimage-qemu-guest-agent").read_text().split()
    assert accepted == ["app-emulation/qemu-guest-agent", "~amd64"]
    assert accepted[1] in _keywords("qemu-guest-agent-10.2.3.ebuild")  # the testing version is now visible


@pytest.mark.parametrize("env", [{"DISTRO_NAME": "debian"}, {"DISTRO_NAME": "gentoo", "DIB_WATCHDOG_AGENT": "0"}])
def test_gentoo_keywords_only_for_gentoo_with_the_agent(sandbox, env):
    proc = _run(GENTOO_KEYWORDS, sandbox, ARCH="amd64", **env)
    assert proc.returncode == 0 and not (sandbox[0] / "etc/portage").exists()


def test_gentoo_openrc_service_is_the_one_upstream_ships():
    """The wdimage-watchdog element adds `watchdog` to OpenRC's default runlevel: Gentoo's ebuild installs
    watchdog-init.d-r1 under that name, and it needs only localmount."""
    ebuild = (UPSTREAM / "gentoo/watchdog-5.16-r1.ebuild").read_text()
    assert 'newinitd "${FILESDIR}"/${PN}-init.d-r1 ${PN}' in ebuild
    init = (UPSTREAM / "gentoo/watchdog-init.d-r1").read_text()
    assert init.startswith("#!/sbin/openrc-run") and "need localmount" in init
    assert "rc_add watchdog default" in SETUP.read_text()


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
                DIB_WDIMAGE_KERNEL_RELEASE=KREL)
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
                DIB_WDIMAGE_KERNEL_RELEASE=KREL)
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
                DIB_WDIMAGE_KERNEL_RELEASE=KREL)
    assert proc.returncode == 0, proc.stderr
    assert (root / f"boot/vmlinuz-{KREL}").read_text() == "kernel"
    assert (root / "lib").is_symlink()
    assert (root / f"usr/lib/modules/{KREL}/kernel/drivers/watchdog/i6300esb.ko").is_file()
    assert _calls(sandbox) == [f"depmod -b {root} -a {KREL}", "install-packages sys-kernel/dracut",
                               f"dracut --force --kver {KREL} {root}/boot/initramfs-{KREL}.img"]


# --- the dracut module (CentOS, Gentoo; Debian with --initramfs dracut) ----------------------------------------------

INITRAMFS = ELEMENTS / "wdimage-watchdog/install.d/78-wdimage-watchdog-initramfs"
DRACUT_MODULE = "usr/lib/dracut/modules.d/04wdimage-watchdog"


@pytest.mark.parametrize("distro", ["centos", "gentoo", "debian"])
def test_dracut_module_is_installed_where_dracut_finds_it(sandbox, distro):
    root = sandbox[0]
    proc = _run(INITRAMFS, sandbox, DISTRO_NAME=distro, DIB_WATCHDOG_INITRAMFS_TOOL="dracut")
    assert proc.returncode == 0, proc.stderr
    assert_installed(root, f"{DRACUT_MODULE}/module-setup.sh",
                     "wdimage-watchdog/wdimage-files/wdimage-dracut-module-setup.sh", 0o755)
    assert_installed(root, f"{DRACUT_MODULE}/wdimage-watchdog.sh",
                     "wdimage-watchdog/wdimage-files/wdimage-dracut-arm.sh", 0o755)
    assert_installed(root, "etc/dracut.conf.d/50-wdimage-watchdog.conf",
                     "wdimage-watchdog/wdimage-files/wdimage-dracut.conf", 0o644)
    assert 'add_dracutmodules+=" wdimage-watchdog "' in (root / "etc/dracut.conf.d/50-wdimage-watchdog.conf").read_text()
    assert (root / "etc/wdimage/initramfs-modules").read_text() == "i6300esb\n"
    assert not (root / "etc/initramfs-tools").exists()
    assert _calls(sandbox) == []  # a scratch root: no package installed, no dracut run
    assert "(dracut)" in proc.stdout


def test_dracut_module_lists_the_lpc_bridge_before_the_ich9_tco(sandbox):
    root = sandbox[0]
    assert _run(INITRAMFS, sandbox, DISTRO_NAME="centos", DIB_WATCHDOG_INITRAMFS_TOOL="dracut",
                DIB_WATCHDOG_MODULE="iTCO_wdt").returncode == 0
    assert (root / "etc/wdimage/initramfs-modules").read_text() == "lpc_ich iTCO_wdt\n"


def test_initramfs_tool_auto_follows_the_image_and_a_bad_one_fails(sandbox):
    root = sandbox[0]
    (root / "usr/lib/dracut").mkdir(parents=True)
    assert _run(INITRAMFS, sandbox, DISTRO_NAME="gentoo").returncode == 0
    assert (root / DRACUT_MODULE / "module-setup.sh").exists()
    proc = _run(INITRAMFS, sandbox, DISTRO_NAME="gentoo", DIB_WATCHDOG_INITRAMFS_TOOL="mkinitcpio")
    assert proc.returncode == 1 and "DIB_WATCHDOG_INITRAMFS_TOOL must be" in proc.stderr


# dracut's functions as module-setup.sh calls them, each recording its call; require_binaries looks in $BINDIR.
DRACUT_STUBS = r"""
record() { echo "$*" >> "$CALLS"; }
inst_multiple() { record "inst_multiple $*"; }
inst_simple() { record "inst_simple $*"; }
inst_hook() { record "inst_hook $*"; }
ln_r() { record "ln_r $*"; }
instmods() { record "instmods hostonly=[${hostonly}] $*"; }
require_binaries() { local b; for b in "$@"; do [ -x "$BINDIR/$b" ] || return 1; done; }
hostonly=yes
moddir=/usr/lib/dracut/modules.d/04wdimage-watchdog
. "$1"
check; echo "check=$?"
depends; echo "depends=$?"
installkernel; echo "installkernel=$?"
install; echo "install=$?"
"""


def _dracut_run(root: Path, tmp_path: Path, modules: str, keepalive: bool = True) -> tuple[list[str], list[str]]:
    bindir = tmp_path / f"guest-bin-{keepalive}"
    bindir.mkdir(exist_ok=True)
    if keepalive:
        _stub(bindir, "wd_keepalive", "exit 0")
    (root / "etc/wdimage").mkdir(parents=True, exist_ok=True)
    (root / "etc/wdimage/initramfs-modules").write_text(modules)
    (root / "etc/watchdog.conf").write_text("watchdog-device = /dev/watchdog\n")
    (root / "etc/modprobe.d").mkdir(parents=True, exist_ok=True)
    (root / "etc/modprobe.d/wdimage-watchdog-blacklist.conf").write_text("blacklist ib700wdt\n")
    calls = tmp_path / "dracut-calls"
    calls.write_text("")
    proc = subprocess.run(["bash", "-c", DRACUT_STUBS, "bash", str(root / DRACUT_MODULE / "module-setup.sh")],
                          env={"PATH": os.environ["PATH"], "CALLS": str(calls), "BINDIR": str(bindir),
                               "dracutsysrootdir": str(root)}, capture_output=True, text=True)
    assert proc.stderr == ""
    return proc.stdout.splitlines(), calls.read_text().splitlines()


def test_dracut_module_setup_follows_dracuts_conventions(sandbox, tmp_path):
    """check: only when asked for (255), and only where the keepalive and the configs exist (1 otherwise);
    installkernel: the listed drivers, also in host-only mode (the build host has none of them loaded);
    install: the keepalive, its config, the list, and the hook that arms the device at cmdline, dracut's first."""
    root = sandbox[0]
    assert _run(INITRAMFS, sandbox, DISTRO_NAME="centos", DIB_WATCHDOG_INITRAMFS_TOOL="dracut",
                DIB_WATCHDOG_MODULE="iTCO_wdt").returncode == 0
    results, calls = _dracut_run(root, tmp_path, (root / "etc/wdimage/initramfs-modules").read_text())
    assert results == ["check=255", "depends=0", "installkernel=0", "install=0"]
    assert calls == ["instmods hostonly=[] lpc_ich iTCO_wdt", "inst_multiple wd_keepalive",
                     "ln_r /usr/sbin/wd_keepalive /usr/sbin/@wd_keepalive",
                     "inst_simple /etc/watchdog.conf", "inst_simple /etc/wdimage/initramfs-modules",
                     "inst_simple /etc/modprobe.d/wdimage-watchdog-blacklist.conf",
                     "inst_hook cmdline 00 /usr/lib/dracut/modules.d/04wdimage-watchdog/wdimage-watchdog.sh"]
    # Anything but a module name in the list stays out of dracut's commands.
    _, calls = _dracut_run(root, tmp_path, "i6300esb $(reboot) ../x\n")
    assert calls[0] == "instmods hostonly=[] i6300esb"
    results, _ = _dracut_run(root, tmp_path, "i6300esb\n", keepalive=False)
    assert results[0] == "check=1"
