"""The kernel Makefile's environment for Kconfig, and the parse cache keyed on the tree's content."""

import shutil
import subprocess
from pathlib import Path

import pytest

from wdimage import log
from wdimage.errors import WdimageError
from wdimage.kconfig.tree import kconfig_environment, kernel_version, parse_tree, srcarch

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "kconfig"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("WDIMAGE_CACHE", str(tmp_path / "cache"))
    for var in ("ARCH", "CC", "LD", "CROSS_COMPILE", "LLVM"):
        monkeypatch.delenv(var, raising=False)


@pytest.mark.parametrize("arch, expected", [("x86_64", "x86"), ("i386", "x86"), ("x86", "x86"),
                                            ("arm64", "arm64"), ("sparc64", "sparc"), ("parisc64", "parisc")])
def test_srcarch_folds_like_the_makefile(arch, expected):
    assert srcarch(arch) == expected


def test_kernel_version_from_the_makefile(tmp_path):
    (tmp_path / "Makefile").write_text("# SPDX\nVERSION = 7\nPATCHLEVEL = 2\nSUBLEVEL = 13\nEXTRAVERSION = -rc1\n")
    assert kernel_version(tmp_path) == "7.2.13-rc1"
    (tmp_path / "Makefile").write_text("VERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 0\nEXTRAVERSION =\n")
    assert kernel_version(tmp_path) == "6.1.0"


def test_environment_is_what_the_makefile_exports(tmp_path):
    env = kconfig_environment(FIXTURES / "watchdog", "x86_64")
    assert (env["ARCH"], env["SRCARCH"], env["KERNELVERSION"]) == ("x86_64", "x86", "6.1.0-fixture")
    assert (env["CC"], env["LD"], env["OBJCOPY"], env["CLANG_FLAGS"]) == ("gcc", "ld", "objcopy", "")
    first_line = subprocess.run(["gcc", "--version"], capture_output=True, text=True,
                                env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"}).stdout.splitlines()[0]
    assert env["CC_VERSION_TEXT"] == first_line.replace("#", "")
    assert env["srctree"] == str(FIXTURES / "watchdog")


def test_cross_compile_prefix_is_honoured(monkeypatch):
    monkeypatch.setenv("CROSS_COMPILE", "aarch64-linux-gnu-")
    env = kconfig_environment(FIXTURES / "watchdog", "arm64")
    assert (env["CC"], env["LD"], env["CPP"]) == ("aarch64-linux-gnu-gcc", "aarch64-linux-gnu-ld",
                                                  "aarch64-linux-gnu-gcc -E")


def test_parse_cache_follows_the_trees_content(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(log, "quiet", False)
    tree_dir = tmp_path / "tree"
    shutil.copytree(FIXTURES / "watchdog", tree_dir)

    def parse_and_hz() -> tuple[str, bool]:
        tree = parse_tree(tree_dir, "x86")
        tree.load_config_text("", "t")
        return tree.value("HZ"), "Parsing the Kconfig tree" in capsys.readouterr().err

    assert parse_and_hz() == ("250", True)
    assert len(list((tmp_path / "cache" / "kconfig-parse").glob("*.pickle"))) == 1
    assert parse_and_hz() == ("250", False)  # from the cache
    kconfig = tree_dir / "arch" / "x86" / "Kconfig"  # a sourced file, read before the main HZ definition
    kconfig.write_text(kconfig.read_text() + "\nconfig HZ\n\tint\n\tdefault 300 if X86\n")
    assert parse_and_hz() == ("300", True)


def test_a_parse_never_writes_into_the_tree(tmp_path):
    tree_dir = tmp_path / "tree"
    shutil.copytree(FIXTURES / "compat", tree_dir)  # runs the assembler through $(shell,...)
    before = sorted(p.name for p in tree_dir.rglob("*"))
    parse_tree(tree_dir, "x86", use_cache=False)
    assert sorted(p.name for p in tree_dir.rglob("*")) == before


def test_unknown_arch_and_missing_tree_exit_2(tmp_path):
    with pytest.raises(WdimageError, match="--arch arm64"):
        parse_tree(FIXTURES / "watchdog", "arm64")
    with pytest.raises(WdimageError, match="no Kconfig file"):
        parse_tree(tmp_path, "x86")
