"""`wdimage cloud-init`: user-data checked by cloud-init's own schema checker (Debian's cloud-init package), its
watchdog.conf the build's, its setup script clean for shellcheck, bad input exit 2."""

import base64
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from wdimage import cli
from wdimage.image import build, cloudinit
from wdimage.models import Model

pytestmark = pytest.mark.skipif(shutil.which("cloud-init") is None,
                                reason="cloud-init is not installed (make deps: APT_TEST)")


def _user_data(tmp_path: Path, capsys, *options: str) -> tuple[Path, dict]:
    out = tmp_path / "user-data"
    assert cli.main(["cloud-init", *options, "--output", str(out), "--json"]) == 0
    return out, json.loads(capsys.readouterr().out)


def _schema(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["cloud-init", "schema", "--config-file", str(path)], capture_output=True, text=True)


def _files(path: Path) -> dict[str, dict]:
    return {f["path"]: f for f in yaml.safe_load(path.read_text())["write_files"]}


@pytest.mark.parametrize("distro", list(cloudinit.FAMILIES))
@pytest.mark.parametrize("model", [str(m) for m in Model])
def test_user_data_passes_cloud_inits_schema_check(tmp_path, capsys, distro, model):
    path, plan = _user_data(tmp_path, capsys, "--distro", distro, "--model", model)
    proc = _schema(path)
    assert proc.returncode == 0 and "Valid cloud-config" in proc.stdout, proc.stdout + proc.stderr
    assert path.read_text().startswith("#cloud-config\n")
    data = yaml.safe_load(path.read_text())
    assert data["packages"] == plan["packages"] and data["runcmd"] == [[cloudinit.SETUP_SCRIPT]]
    files = _files(path)
    assert files["/etc/modules-load.d/wdimage-watchdog.conf"]["content"] == f"{plan['module']}\n"
    blacklist = files["/etc/modprobe.d/wdimage-watchdog-blacklist.conf"]["content"]
    assert [line.split()[1] for line in blacklist.splitlines() if line.startswith("blacklist ")] == plan["blacklist"]
    assert plan["module"] not in plan["blacklist"] and len(plan["blacklist"]) == len(Model) - 1
    # the packages' own files first, then wdimage's config and the script that (re)starts the daemon
    assert files["/etc/watchdog.conf"]["defer"] is True and files[cloudinit.SETUP_SCRIPT]["defer"] is True


def test_the_schema_checker_bites(tmp_path, capsys):
    path, _ = _user_data(tmp_path, capsys)
    path.write_text(path.read_text().replace("    defer: true\n", "    defr: true\n", 1))
    proc = _schema(path)
    assert proc.returncode != 0 and "defr" in proc.stdout + proc.stderr


def test_packages_come_from_the_distro_entries(tmp_path, capsys):
    assert _user_data(tmp_path, capsys, "--distro", "debian")[1]["packages"] == ["watchdog", "qemu-guest-agent"]
    assert _user_data(tmp_path, capsys, "--distro", "gentoo")[1]["packages"] == [
        "sys-apps/watchdog", "app-emulation/qemu-guest-agent"]
    # CentOS keeps iTCO_wdt in kernel-modules, not kernel-core
    assert "kernel-modules" in _user_data(tmp_path, capsys, "--distro", "centos", "--model", "itco")[1]["packages"]


def test_watchdog_conf_is_the_builds(tmp_path, capsys):
    test = tmp_path / "check-app"
    test.write_bytes(b"#!/bin/sh\npgrep -x app\n")
    options = ["--model", "ib700", "--timeout", "10", "--ping", "10.0.2.2", "--interface", "ens3",
               "--max-load", "8", "--pidfile", "/run/app.pid", "--retry-timeout", "30"]
    path, _ = _user_data(tmp_path, capsys, *options, "--test-binary", str(test))
    settings = build.make_settings("debian", model="ib700", timeout=10, ping=("10.0.2.2",), interfaces=("ens3",),
                                   max_load_1=8, health_options=dict(pidfiles=("/run/app.pid",), retry_timeout=30,
                                                                     test_binary=str(test)),
                                   output=tmp_path / "out")
    files = _files(path)
    assert files["/etc/watchdog.conf"]["content"] == build.watchdog_conf(settings)
    embedded = files["/usr/local/lib/wdimage/health/check-app"]
    assert embedded["encoding"] == "b64" and embedded["permissions"] == "0755"
    assert base64.b64decode(embedded["content"]) == test.read_bytes()
    assert _schema(path).returncode == 0


def test_the_header_names_each_hosts_setting_or_why_it_has_none(tmp_path, capsys):
    path = tmp_path / "user-data"
    assert cli.main(["cloud-init", "--model", "ib700", "--action", "pause", "--output", str(path), "--json"]) == 0
    captured = capsys.readouterr()
    plan = json.loads(captured.out)
    assert plan["hypervisor"]["proxmox"] == "qm set VMID --watchdog model=ib700,action=pause"
    assert plan["hypervisor"]["kubevirt"].startswith("left out: ib700: KubeVirt")
    assert plan["hypervisor"]["libvirt"] == '<watchdog model="ib700" action="pause"/>'
    text = path.read_text()
    assert "#   proxmox: qm set VMID --watchdog model=ib700,action=pause\n" in text
    assert "warning: --action pause" in captured.err


def test_setup_script_passes_shellcheck(tmp_path, capsys):
    path, _ = _user_data(tmp_path, capsys, "--distro", "gentoo", "--model", "itco")
    script = tmp_path / "setup.sh"
    script.write_text(_files(path)[cloudinit.SETUP_SCRIPT]["content"])
    proc = subprocess.run(["shellcheck", "-s", "sh", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
    assert "module=iTCO_wdt\n" in script.read_text()


def test_without_output_the_user_data_goes_to_stdout(capsys):
    assert cli.main(["cloud-init"]) == 0
    assert capsys.readouterr().out.startswith("#cloud-config\n")


@pytest.mark.parametrize("options,words", [
    (["--timeout", "0"], "--timeout 0"),
    (["--model", "ib700", "--timeout", "31"], "ib700 accepts 1..30"),
    (["--ping", "gw.example"], "--ping"),
    (["--interface", "eth0"], "--interface eth0"),
    (["--pidfile", "run/x.pid"], "--pidfile"),
    (["--test-binary", "/nonexistent/x"], "no such file"),
    (["--output", "/nonexistent/dir/user-data"], "--output"),
    (["--model", "wdt977"], "--model"),
])
def test_bad_input_exits_2_naming_the_option(capsys, options, words):
    try:
        code = cli.main(["cloud-init", *options])
    except SystemExit as e:  # argparse's own usage errors
        code = e.code
    assert code == 2
    assert words in capsys.readouterr().err
