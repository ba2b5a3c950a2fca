"""Every input held to what its consumer accepts: the libvirt XML, kconfiglib's version, the parse cache's
directory, `diff --exit-code`, the elements' executable bits."""

import json
import os
import shutil
import stat
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import kconfiglib
import pytest

from wdimage import cli, datadir
from wdimage.errors import WdimageError
from wdimage.image import render
from wdimage.models import Action, Model

REPO = Path(__file__).resolve().parents[2]


def _guest(name: str) -> render.GuestFiles:
    return render.GuestFiles(name=name, model=Model.I6300ESB, action=Action.NONE, image=f"{name}.qcow2",
                             kernel=None, initrd=None, cmdline=None, agent=True)


@pytest.mark.parametrize("name", ["a--b", "x-", "a---b", "z--"])
def test_libvirt_xml_is_well_formed_for_any_valid_name(tmp_path, name):
    """`--` is allowed in names; an XML comment may not contain it (the old comment carried the name)."""
    root = ET.fromstring(render.render_libvirt_xml(_guest(name), tmp_path))
    assert root.findtext("name") == name


def _mini_tree(d: Path) -> Path:
    tree = d / "tree"
    (tree / "arch" / "x86").mkdir(parents=True)
    (tree / "Makefile").write_text("VERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 0\nEXTRAVERSION =\n")
    symbols = "".join(f'config {n}\n\t{k} "{n}"\n' for n, k in (
        ("MODULES", "bool"), ("WATCHDOG", "bool"), ("WATCHDOG_CORE", "bool"), ("I6300ESB_WDT", "tristate"),
        ("IB700_WDT", "tristate"), ("MAGIC_SYSRQ", "bool")))
    (tree / "Kconfig").write_text(f'mainmenu "t"\nsource "arch/$(SRCARCH)/Kconfig"\n{symbols}')
    (tree / "arch" / "x86" / "Kconfig").write_text("config X86\n\tdef_bool y\n")
    return tree


def test_a_mismatched_kconfiglib_is_exit_2_only_where_it_is_needed(tmp_path):
    """A kconfiglib other than the pinned one (here the real file with another VERSION) on the path."""
    fake = tmp_path / "site"
    fake.mkdir()
    text = Path(kconfiglib.__file__).read_text()
    (fake / "kconfiglib.py").write_text(text.replace("VERSION = (14, 1, 0)", "VERSION = (14, 2, 0)"))
    assert "VERSION = (14, 2, 0)" in (fake / "kconfiglib.py").read_text()
    env = {**os.environ, "PYTHONPATH": f"{fake}:{REPO}", "WDIMAGE_CACHE": str(tmp_path / "cache")}
    (tmp_path / "good.config").write_text("CONFIG_WATCHDOG=y\n")

    def wdimage(*args):
        return subprocess.run([sys.executable, "-m", "wdimage", *args], env=env, capture_output=True, text=True,
                              cwd=tmp_path)

    for args, code in [(("build", "debian", "--dry-run", "--output", str(tmp_path / "o")), 0),
                       (("matrix",), 0),
                       (("drill", str(tmp_path / "nothing")), 2),
                       (("kernel-config", "--check", "--config", str(tmp_path / "good.config")), 3)]:
        proc = wdimage(*args)
        assert proc.returncode == code and "Traceback" not in proc.stderr and "14.1.0" not in proc.stderr, \
            (args, proc.stderr)
    proc = wdimage("kernel-config", "--merge", "--kernel-src", str(_mini_tree(tmp_path)),
                   "--config", str(tmp_path / "good.config"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "kconfiglib 14.1.0" in proc.stderr and "(14, 2, 0)" in proc.stderr


def test_parse_cache_directory_is_private_and_a_shared_one_is_refused(tmp_path, monkeypatch):
    from wdimage.kconfig import tree as kconfig_tree  # noqa: PLC0415 kconfiglib, only here
    monkeypatch.setenv("WDIMAGE_CACHE", str(tmp_path / "cache"))
    tree = _mini_tree(tmp_path)
    kconfig_tree.parse_tree(tree, "x86")
    parse = tmp_path / "cache" / "kconfig-parse"
    assert stat.S_IMODE(parse.stat().st_mode) == 0o700 and list(parse.glob("*.pickle"))
    parse.chmod(0o777)  # a shared directory: anyone could have put a pickle there
    with pytest.raises(WdimageError) as e:
        kconfig_tree.parse_tree(tree, "x86")
    assert str(parse) in e.value.message and "writable by other users" in e.value.message
    shutil.rmtree(parse)
    parse.symlink_to(tmp_path)
    with pytest.raises(WdimageError):
        kconfig_tree.parse_tree(tree, "x86")


def _manifest(**changes) -> dict:
    base = {"schema": 1, "name": "img", "model": "i6300esb", "timeout": 15,
            "packages": {"watchdog": {"name": "watchdog", "version": "5.16-1+b2"}},
            "installed_packages": [{"name": "watchdog", "version": "5.16-1+b2", "arch": "amd64"}],
            "checksums": {"img.qcow2": "aa"}, "build": {"started": "t1", "seconds": 30.0}}
    return {**base, **changes}


@pytest.mark.parametrize("b, code", [
    (_manifest(checksums={"img.qcow2": "bb"}, build={"started": "t2", "seconds": 31.0}), 0),  # any two builds
    (_manifest(checksums={"img.qcow2": "bb"}, timeout=20), 1),  # a setting
    (_manifest(packages={"watchdog": {"name": "watchdog", "version": "5.17"}}), 1),  # a package
    (_manifest(installed_packages=[]), 1),
])
def test_diff_exit_code_counts_settings_and_packages_not_checksums(tmp_path, capsys, b, code):
    (tmp_path / "a.json").write_text(json.dumps(_manifest()))
    (tmp_path / "b.json").write_text(json.dumps(b))
    assert cli.main(["diff", "--exit-code", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == code
    out = capsys.readouterr().out
    if b["checksums"] != _manifest()["checksums"]:
        assert "checksums (not counted by --exit-code):" in out and "img.qcow2" in out


def test_elements_without_exec_bits_get_a_copy_with_them(tmp_path, monkeypatch):
    """What an installer that drops modes (setuptools package-data does) would leave: DIB runs only
    executable phase scripts, so wdimage restores the bits in a cache copy."""
    monkeypatch.setenv("WDIMAGE_CACHE", str(tmp_path / "cache"))
    stripped = tmp_path / "elements"
    shutil.copytree(REPO / "elements", stripped)
    scripts = datadir.runnable_scripts(stripped)
    assert len(scripts) >= 8
    for script in scripts:
        script.chmod(0o644)
    usable = datadir.executable_elements(stripped)
    assert usable != stripped and usable.is_relative_to(tmp_path / "cache")
    assert all(os.access(p, os.X_OK) for p in datadir.runnable_scripts(usable))
    assert not os.access(usable / "wdimage-watchdog" / "element-deps", os.X_OK)
    assert datadir.executable_elements(REPO / "elements") == REPO / "elements"  # a checkout: used as it is
    assert datadir.executable_elements(stripped) == usable  # made once


def test_the_wheel_ships_elements_with_exec_bits_and_the_fragments(tmp_path):
    """The wheel itself (what pip and pipx install): every element file, everything in a phase directory
    executable (environment.d included, though DIB only sources those), other files (wdimage-files/, the guest
    files) as in the repository."""
    import zipfile  # noqa: PLC0415
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                    str(tmp_path), str(REPO)], check=True, cwd=tmp_path, capture_output=True)
    (wheel,) = tmp_path.glob("wdimage-*.whl")
    entries = {i.filename.split(".data/data/", 1)[-1]: i.external_attr >> 16
               for i in zipfile.ZipFile(wheel).infolist()}
    for path in sorted(p for p in (REPO / "elements").rglob("*") if p.is_file()):
        key = f"share/wdimage/{path.relative_to(REPO)}"
        assert key in entries, f"{key} missing from the wheel"
        runnable = 0o111 if path.parent.name.endswith(".d") else 0  # setup.py's InstallData
        assert entries[key] & 0o777 == (path.stat().st_mode & 0o777) | runnable, key
    assert "share/wdimage/kconfig-fragments/watchdog.config" in entries
    assert "wdimage/image/templates/run.sh.j2" in entries
    for template in (REPO / "wdimage" / "drill" / "templates").iterdir():  # the drill's HTML report
        assert f"wdimage/drill/templates/{template.name}" in entries, template.name
