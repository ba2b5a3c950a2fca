"""The health and network element scripts against a scratch root, and against upstream's own unit and init
files (tests/fixtures/upstream, sources in SOURCES.md): the daemon's network tests start after the network on
every init system, the early keepalive hands the device over to whichever upstream unit runs the daemon."""

import configparser
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.unit.test_elements import ELEMENTS, _calls, _run, assert_installed
from tests.unit.test_elements import sandbox as elements_sandbox  # noqa: F401 (a fixture)

HEALTH = ELEMENTS / "wdimage-watchdog/install.d/77-wdimage-watchdog-health"
NETWORK = ELEMENTS / "wdimage-network/install.d/74-wdimage-network"
SETUP = ELEMENTS / "wdimage-watchdog/install.d/75-wdimage-watchdog-setup"
UPSTREAM = Path(__file__).resolve().parents[1] / "fixtures/upstream"
EXAMPLE = Path(__file__).resolve().parents[2] / "wdimage/image/health_example"


@pytest.fixture
def sandbox(elements_sandbox):
    """test_elements' scratch root and stubs, plus grep (the network script reads interfaces(5))."""
    grep = elements_sandbox[1] / "grep"
    if not grep.exists():  # test_elements may link it already
        grep.symlink_to(shutil.which("grep"))
    return elements_sandbox


def _hand_in_example(root: Path) -> Path:
    handed = root / "tmp/in_target.d/wdimage-health"
    handed.mkdir(parents=True)
    for name in ("wdimage-example-service", "wdimage-example-test", "wdimage-example-repair"):
        shutil.copy(EXAMPLE / name, handed / name)
    return handed


def _unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read_string(path.read_text())
    return parser


def _words(parser, section, key) -> set[str]:
    return set(parser.get(section, key, fallback="").split())


def test_systemd_network_tests_wait_for_network_online(sandbox):
    root = sandbox[0]
    proc = _run(HEALTH, sandbox, DISTRO_NAME="debian", DIB_INIT_SYSTEM="systemd", DIB_WATCHDOG_NETWORK_TESTS="1",
                DIB_WATCHDOG_HEALTH_EXAMPLE="0")
    assert proc.returncode == 0, proc.stderr
    for unit in ("watchdog.service", "watchdog-ping.service"):
        dropin = _unit(root / f"etc/systemd/system/{unit}.d/50-wdimage-health.conf")
        assert _words(dropin, "Unit", "After") == {"network-online.target"}
        assert _words(dropin, "Unit", "Wants") == {"network-online.target"}
    assert "systemctl enable wdimage-keepalive.service" in _calls(sandbox)
    assert (root / "var/log/journal").is_dir()  # the daemon's reason survives its soft reboot


def test_systemd_without_network_tests_adds_no_network_order(sandbox):
    root = sandbox[0]
    proc = _run(HEALTH, sandbox, DISTRO_NAME="centos", DIB_INIT_SYSTEM="systemd", DIB_WATCHDOG_NETWORK_TESTS="0",
                DIB_WATCHDOG_HEALTH_EXAMPLE="0")
    assert proc.returncode == 0, proc.stderr
    dropin = _unit(root / "etc/systemd/system/watchdog.service.d/50-wdimage-health.conf")
    assert not dropin.has_option("Unit", "After")


@pytest.mark.parametrize("upstream", ["debian-bookworm/watchdog.service", "gentoo/watchdog.service",
                                      "fedora/watchdog-ping.service"])
def test_keepalive_hands_over_to_every_upstream_daemon_unit(sandbox, upstream):
    """Two openers of /dev/watchdog cannot coexist: every unit that runs the daemon stops the keepalive before
    it starts. Not by Conflicts=: the boot transaction starts both, and systemd drops one of two conflicting
    start jobs (measured: the daemon never started)."""
    root = sandbox[0]
    assert _run(HEALTH, sandbox, DISTRO_NAME="debian", DIB_INIT_SYSTEM="systemd").returncode == 0
    daemon = _unit(UPSTREAM / upstream)
    assert daemon.get("Service", "ExecStart").split()[0] in ("/usr/sbin/watchdog", "/bin/sh")
    name = Path(upstream).name
    dropin = _unit(root / f"etc/systemd/system/{name}.d/50-wdimage-health.conf")
    assert dropin.get("Service", "ExecStartPre") == "-/usr/local/lib/wdimage/take-over-keepalive"
    keepalive = _unit(root / "etc/systemd/system/wdimage-keepalive.service")
    # The keepalive takes the device over from the initramfs's the same way, and SIGKILL ends it cleanly;
    # a stop by systemd (shutdown) keeps wd_keepalive's SIGTERM, its magic close.
    assert keepalive.get("Service", "ExecStartPre") == "-/usr/local/lib/wdimage/take-over-keepalive"
    assert keepalive.get("Service", "SuccessExitStatus") == "SIGKILL"
    assert not keepalive.has_option("Service", "KillSignal")
    assert name not in _words(keepalive, "Unit", "Conflicts") | _words(daemon, "Unit", "Conflicts")
    assert "wdimage-keepalive.service" not in _words(daemon, "Unit", "Conflicts")
    assert keepalive.get("Unit", "DefaultDependencies") == "no"
    assert keepalive.get("Service", "ExecStart") == "/usr/sbin/wd_keepalive"
    assert _words(keepalive, "Install", "WantedBy") == {"sysinit.target"}


def test_upstream_units_alone_start_the_daemon_before_the_network():
    """Why the drop-in is needed: no upstream unit orders the daemon after network-online.target."""
    for path in UPSTREAM.rglob("*watchdog*.service"):  # the daemon's units (other fixtures: kdump, the agent)
        unit = _unit(path)
        assert "network-online.target" not in _words(unit, "Unit", "After"), path
    assert _words(_unit(UPSTREAM / "fedora/watchdog-ping.service"), "Unit", "After") == {"network.target"}


def _openrc_service_deps(root: Path, service: Path, conf: Path) -> str:
    """What openrc-run would see: conf.d sourced before the service script (openrc-run.sh), then
    depend() and start_pre run with stub dependency helpers that print what they are given."""
    script = f"""
need() {{ echo "need $*"; }}; use() {{ echo "use $*"; }}; after() {{ echo "after $*"; }}; before() {{ :; }}
start-stop-daemon() {{ echo "start-stop-daemon $*"; }}; mark_service_stopped() {{ echo "stopped $*"; }}
/usr/local/lib/wdimage/take-over-keepalive() {{ echo "take-over-keepalive"; }}
. "{conf}"
. "{service}"
depend
echo "rc_need=${{rc_need:-}} rc_after=${{rc_after:-}}"
touch "{root}/wd_keepalive.pid"
sed() {{ :; }}
start_pre
"""
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True).stdout


def test_gentoo_init_script_waits_for_net_and_takes_over_from_the_keepalive(sandbox):
    root = sandbox[0]
    (root / "etc/init.d").mkdir(parents=True)
    (root / "etc/conf.d").mkdir(parents=True)
    shutil.copy(UPSTREAM / "gentoo/watchdog.initd", root / "etc/init.d/watchdog")
    shutil.copy(UPSTREAM / "gentoo/watchdog.confd", root / "etc/conf.d/watchdog")
    assert "need localmount" in (root / "etc/init.d/watchdog").read_text()  # upstream: nothing about the network
    proc = _run(HEALTH, sandbox, DISTRO_NAME="gentoo", DIB_INIT_SYSTEM="openrc", DIB_WATCHDOG_NETWORK_TESTS="1",
                DIB_WATCHDOG_HEALTH_EXAMPLE="0")
    assert proc.returncode == 0, proc.stderr
    conf = (root / "etc/conf.d/watchdog").read_text()
    assert conf.startswith((UPSTREAM / "gentoo/watchdog.confd").read_text())  # the package's own lines kept
    conf_path = root / "etc/conf.d/watchdog"
    conf_path.write_text(conf.replace("/run/wd_keepalive.pid", f"{root}/wd_keepalive.pid"))
    seen = _openrc_service_deps(root, root / "etc/init.d/watchdog", conf_path)
    assert "need localmount" in seen and 'rc_need=net' in seen
    assert "take-over-keepalive" in seen and "start-stop-daemon --stop" not in seen  # SIGKILL, not a magic close
    assert "stopped wdimage-keepalive" in seen
    assert "rc-update add wdimage-keepalive boot" in _calls(sandbox)


def test_openrc_rerun_does_not_duplicate_conf_lines(sandbox):
    root = sandbox[0]
    env = dict(DISTRO_NAME="gentoo", DIB_INIT_SYSTEM="openrc", DIB_WATCHDOG_NETWORK_TESTS="1",
               DIB_WATCHDOG_HEALTH_EXAMPLE="0")
    assert _run(HEALTH, sandbox, **env).returncode == 0
    assert _run(HEALTH, sandbox, **env).returncode == 0
    assert (root / "etc/conf.d/watchdog").read_text().count('rc_need="net"') == 1


def test_debian_openrc_native_service_calls_the_handover(sandbox):
    root = sandbox[0]
    (root / "etc/default").mkdir(parents=True)
    (root / "etc/default/watchdog").write_text('watchdog_module="none"\n')
    assert _run(SETUP, sandbox, DISTRO_NAME="debian", DIB_INIT_SYSTEM="openrc").returncode == 0
    _hand_in_example(root)
    proc = _run(HEALTH, sandbox, DISTRO_NAME="debian", DIB_INIT_SYSTEM="openrc", DIB_WATCHDOG_NETWORK_TESTS="1",
                DIB_WATCHDOG_HEALTH_EXAMPLE="1")
    assert proc.returncode == 0, proc.stderr
    conf_path = root / "etc/conf.d/watchdog"
    conf_path.write_text(conf_path.read_text().replace("/run/wd_keepalive.pid", f"{root}/wd_keepalive.pid"))
    service = (root / "etc/init.d/watchdog").read_text().replace("/etc/default/watchdog", str(root / "x"))
    (root / "svc").write_text(service)
    seen = _openrc_service_deps(root, root / "svc", conf_path)
    assert "rc_need=net rc_after=wdimage-example" in seen
    assert "stopped wdimage-keepalive" in seen
    assert (root / "etc/init.d/wdimage-example").is_file()
    assert "rc-update add wdimage-example default" in _calls(sandbox)


def test_example_service_installed_from_the_handed_in_binaries(sandbox):
    root = sandbox[0]
    handed = _hand_in_example(root)
    proc = _run(HEALTH, sandbox, DISTRO_NAME="debian", DIB_INIT_SYSTEM="systemd", DIB_WATCHDOG_NETWORK_TESTS="0",
                DIB_WATCHDOG_HEALTH_EXAMPLE="1")
    assert proc.returncode == 0, proc.stderr
    installed = root / "usr/local/lib/wdimage/health"
    assert sorted(p.name for p in installed.iterdir()) == sorted(p.name for p in handed.iterdir())
    assert all(p.stat().st_mode & 0o111 for p in installed.iterdir())
    service = _unit(root / "etc/systemd/system/wdimage-example.service")
    assert service.get("Service", "ExecStart") == "/usr/local/lib/wdimage/health/wdimage-example-service"
    dropin = _unit(root / "etc/systemd/system/watchdog.service.d/50-wdimage-health.conf")
    assert _words(dropin, "Unit", "After") == {"wdimage-example.service"}


HEALTH_FILES = {  # guest path: (the file in wdimage-watchdog/wdimage-files/, mode)
    "systemd": {
        "usr/local/lib/wdimage/take-over-keepalive": ("wdimage-take-over-keepalive.sh", 0o755),
        "usr/local/lib/wdimage/stamp-armed": ("wdimage-stamp-armed.sh", 0o755),
        "etc/systemd/system/wdimage-keepalive.service": ("wdimage-keepalive.service", 0o644),
        "etc/systemd/system/wdimage-example.service": ("wdimage-example.service", 0o644),
    },
    "openrc": {
        "usr/local/lib/wdimage/take-over-keepalive": ("wdimage-take-over-keepalive.sh", 0o755),
        "usr/local/lib/wdimage/stamp-armed": ("wdimage-stamp-armed.sh", 0o755),
        "etc/init.d/wdimage-keepalive": ("wdimage-keepalive.openrc", 0o755),
        "etc/init.d/wdimage-example": ("wdimage-example.openrc", 0o755),
    },
}


@pytest.mark.parametrize("init", sorted(HEALTH_FILES))
def test_health_installs_its_guest_files_as_before(sandbox, init):
    root = sandbox[0]
    _hand_in_example(root)
    proc = _run(HEALTH, sandbox, DISTRO_NAME="debian", DIB_INIT_SYSTEM=init, DIB_WATCHDOG_HEALTH_EXAMPLE="1")
    assert proc.returncode == 0, proc.stderr
    for guest, (name, mode) in HEALTH_FILES[init].items():
        assert_installed(root, guest, f"wdimage-watchdog/wdimage-files/{name}", mode)


def test_example_requested_without_its_binaries_fails(sandbox):
    proc = _run(HEALTH, sandbox, DISTRO_NAME="debian", DIB_INIT_SYSTEM="systemd", DIB_WATCHDOG_HEALTH_EXAMPLE="1")
    assert proc.returncode == 1 and "was not handed in" in proc.stderr


@pytest.mark.parametrize("state, errno, target, code, healthy_after", [
    ("broken", "2", "/usr/local/lib/wdimage/health/wdimage-example-test", 0, True),
    ("broken+no-repair", "2", "/usr/local/lib/wdimage/health/wdimage-example-test", 2, False),
    ("healthy", "101", "10.0.2.2", 101, True),  # another test's failure: not ours to repair
])
def test_example_test_and_repair(tmp_path, state, errno, target, code, healthy_after):
    """The example pair with /run redirected into tmp_path: the test fails exactly when the file is gone,
    the repair puts it back unless told not to, and never claims another test's failure."""
    run = tmp_path / "run"
    (run / "wdimage-example").mkdir(parents=True)
    if state == "healthy":
        (run / "wdimage-example/healthy").touch()
    if "no-repair" in state:
        (run / "wdimage-example/no-repair").touch()
    def run_script(name, *args):
        text = (EXAMPLE / name).read_text().replace("/run/", f"{run}/")
        return subprocess.run(["sh", "-c", text, name, *args], capture_output=True).returncode

    assert run_script("wdimage-example-test") == (0 if state == "healthy" else 2)
    assert run_script("wdimage-example-repair", errno, target) == code
    assert run_script("wdimage-example-test") == (0 if healthy_after else 2)


def test_network_systemd_networkd_dhcp(sandbox):
    root = sandbox[0]
    (root / "lib/systemd/system").mkdir(parents=True)
    (root / "lib/systemd/system/systemd-networkd.service").write_text("[Unit]\n")
    proc = _run(NETWORK, sandbox, DISTRO_NAME="debian", DIB_INIT_SYSTEM="systemd")
    assert proc.returncode == 0, proc.stderr
    network = _unit(root / "etc/systemd/network/80-wdimage-dhcp.network")
    assert network.get("Network", "DHCP") == "ipv4" and _words(network, "Match", "Name") == {"en*", "eth*"}
    assert "systemctl enable systemd-networkd.service" in _calls(sandbox)
    assert_installed(root, "etc/systemd/network/80-wdimage-dhcp.network",
                     "wdimage-network/wdimage-files/wdimage-dhcp.network", 0o644)


def test_network_leaves_networkmanager_alone(sandbox):
    root = sandbox[0]
    (root / "usr/lib/systemd/system").mkdir(parents=True)
    (root / "usr/lib/systemd/system/NetworkManager.service").write_text("[Unit]\n")
    proc = _run(NETWORK, sandbox, DISTRO_NAME="centos", DIB_INIT_SYSTEM="systemd")
    assert proc.returncode == 0 and not (root / "etc/systemd/network").exists()
    assert _calls(sandbox) == []


def test_network_without_a_manager_fails(sandbox):
    assert _run(NETWORK, sandbox, DISTRO_NAME="debian", DIB_INIT_SYSTEM="systemd").returncode == 1


def test_network_debian_openrc_ifupdown_patterns(sandbox):
    root = sandbox[0]
    proc = _run(NETWORK, sandbox, DISTRO_NAME="debian", DIB_INIT_SYSTEM="openrc")
    assert proc.returncode == 0, proc.stderr
    assert "source /etc/network/interfaces.d/*" in (root / "etc/network/interfaces").read_text()
    text = (root / "etc/network/interfaces.d/wdimage-dhcp").read_text()
    assert "auto /en*=wdnet /eth*=wdnet\niface wdnet inet dhcp\n" in text
    assert_installed(root, "etc/network/interfaces.d/wdimage-dhcp", "wdimage-network/wdimage-files/wdimage-dhcp.interfaces",
                     0o644)
    assert "rc-update add networking boot" in _calls(sandbox)
    assert _run(NETWORK, sandbox, DISTRO_NAME="debian", DIB_INIT_SYSTEM="openrc").returncode == 0
    assert (root / "etc/network/interfaces").read_text().count("source /etc/network/interfaces.d/*") == 1


def test_network_gentoo_dhcpcd(sandbox):
    assert _run(NETWORK, sandbox, DISTRO_NAME="gentoo", DIB_INIT_SYSTEM="openrc").returncode == 0
    assert _calls(sandbox) == ["rc-update add dhcpcd default"]


TAKE_OVER_RUN = r"""
set -eu
mount -t tmpfs tmpfs /run
cp /bin/sleep "$1/wd_keepalive"; cp /bin/sleep "$1/other"
"$1/wd_keepalive" 600 & keepalive=$!
"$1/other" 600 & other=$!
echo "$keepalive" > /run/wd_keepalive.pid
"$2"; wait "$keepalive" || echo "keepalive ended by signal $(( $? - 128 ))"
[ -e /run/wd_keepalive.pid ] || echo "pidfile removed"
echo "$other" > /run/wd_keepalive.pid   # a stale pidfile naming some other process
"$2"; kill -0 "$other" && echo "other left alone"; kill "$other"
[ -e /run/wd_keepalive.pid ] || echo "stale pidfile removed"
"$2" && echo "no pidfile: nothing to do"
ln -s "$1/wd_keepalive" "$1/@wd_keepalive"   # a dracut initramfs's keepalive, started as @wd_keepalive
PATH="$1:$PATH" @wd_keepalive 600 & keepalive=$!
echo "$keepalive" > /run/wd_keepalive.pid
"$2"; wait "$keepalive" || echo "@keepalive ended by signal $(( $? - 128 ))"
"""


@pytest.mark.skipif(shutil.which("unshare") is None or os.geteuid() != 0, reason="needs unshare and root")
def test_take_over_ends_wd_keepalive_with_sigkill_only(sandbox, tmp_path):
    """The hand-over script, run for real in a private mount namespace (its own /run): it ends a wd_keepalive
    with SIGKILL (SIGTERM would be its magic close, disarming the device) and nothing else."""
    root = sandbox[0]
    assert _run(HEALTH, sandbox, DISTRO_NAME="debian", DIB_INIT_SYSTEM="systemd").returncode == 0
    script = root / "usr/local/lib/wdimage/take-over-keepalive"
    assert script.stat().st_mode & 0o111
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", TAKE_OVER_RUN, "sh",
                           str(tmp_path), str(script)], capture_output=True, text=True, timeout=60)
    assert proc.stdout.splitlines() == ["keepalive ended by signal 9", "pidfile removed", "other left alone",
                                        "stale pidfile removed", "no pidfile: nothing to do",
                                        "@keepalive ended by signal 9"], proc.stderr


INITRAMFS = ELEMENTS / "wdimage-watchdog/install.d/78-wdimage-watchdog-initramfs"


def test_initramfs_hook_and_script_for_initramfs_tools(sandbox):
    root = sandbox[0]
    (root / "usr/share/initramfs-tools").mkdir(parents=True)
    proc = _run(INITRAMFS, sandbox, DIB_WATCHDOG_MODULE="ib700wdt")
    assert proc.returncode == 0, proc.stderr
    hook = root / "etc/initramfs-tools/hooks/wdimage-watchdog"
    top = root / "etc/initramfs-tools/scripts/init-top/00-wdimage-watchdog"
    for script in (hook, top):
        assert script.stat().st_mode & 0o111
        assert subprocess.run(["sh", "-n", str(script)]).returncode == 0
        assert subprocess.run(["sh", str(script), "prereqs"], capture_output=True, text=True).stdout.strip() == ""
    assert "manual_add_modules ib700wdt\ncopy_exec /usr/sbin/wd_keepalive" in hook.read_text()
    assert 'ln -s /run "${DESTDIR}/var/run"' in hook.read_text()  # its compiled-in /var/run/wd_keepalive.pid
    text = top.read_text()
    assert "\nmodprobe -q ib700wdt || exit 0\n[ -c /dev/watchdog ]" in text and "/usr/sbin/wd_keepalive ||" in text
    assert "echo initramfs > /run/wdimage/armed-by" in text
    if shutil.which("shellcheck"):
        lint = subprocess.run(["shellcheck", "-s", "sh", str(hook), str(top)], capture_output=True, text=True)
        assert lint.returncode == 0, lint.stdout


def test_initramfs_step_skips_without_initramfs_tools_or_when_off(sandbox):
    root = sandbox[0]
    proc = _run(INITRAMFS, sandbox)
    assert proc.returncode == 0 and "no initramfs-tools" in proc.stdout
    (root / "usr/share/initramfs-tools").mkdir(parents=True)
    proc = _run(INITRAMFS, sandbox, DIB_WATCHDOG_INITRAMFS="0")
    assert proc.returncode == 0 and "armed from the real root" in proc.stdout
    assert not (root / "etc/initramfs-tools/hooks").exists()


def test_initramfs_step_refuses_a_bad_module_name(sandbox):
    proc = _run(INITRAMFS, sandbox, DIB_WATCHDOG_MODULE="i6300esb; reboot")
    assert proc.returncode == 1 and "invalid module name" in proc.stderr


def test_initramfs_loads_the_lpc_bridge_before_the_ich9_tco(sandbox):
    root = sandbox[0]
    (root / "usr/share/initramfs-tools").mkdir(parents=True)
    assert _run(INITRAMFS, sandbox, DIB_WATCHDOG_MODULE="iTCO_wdt").returncode == 0
    assert "manual_add_modules lpc_ich iTCO_wdt" in (root / "etc/initramfs-tools/hooks/wdimage-watchdog").read_text()
    top = root / "etc/initramfs-tools/scripts/init-top/00-wdimage-watchdog"
    assert "modprobe -q lpc_ich || exit 0\nmodprobe -q iTCO_wdt || exit 0\n" in top.read_text()
    assert subprocess.run(["shellcheck", "-s", "sh", str(top)], capture_output=True).returncode == 0
