"""wdimage/image/kernel_build.py without compiling a kernel: the validation of --kernel-src/--config/--fragment, the
tool check, the tree fingerprint, the failure report of a real (tiny) make + gcc run, and the cache layout.

The real compile, install and drill of Linux 6.1 are in tests/real/test_kernel_source.py.
"""

import json
import os
import shutil
from pathlib import Path

import pytest

from wdimage.errors import ExitCode, WdimageError
from wdimage.image import build, kernel_build
from wdimage.models import Model

RELEASE = "6.1.192-wdimage-0123abcd"


def _tree(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "Makefile").write_text("VERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 192\nEXTRAVERSION =\n")
    (path / "Kconfig").write_text("mainmenu \"Linux\"\n")
    return path


def _usage(fn, *args, **kwargs) -> str:
    with pytest.raises(WdimageError) as e:
        fn(*args, **kwargs)
    assert e.value.code == ExitCode.USAGE
    return e.value.message


def test_a_clean_tree_config_and_fragments_pass(tmp_path):
    tree = _tree(tmp_path / "linux")
    config = tmp_path / "my.config"
    config.write_text("#\n# Linux/x86 6.1.192 Kernel Configuration\n#\nCONFIG_X86_64=y\nCONFIG_PCI=y\n")
    fragment = tmp_path / "extra.config"
    fragment.write_text("CONFIG_SOFT_WATCHDOG=m\n")
    source = kernel_build.validate_source(tree, config, [fragment])
    assert source == kernel_build.KernelSource(tree, config, (fragment,))


@pytest.mark.parametrize("missing", ["Makefile", "Kconfig"])
def test_a_tree_without_makefile_or_kconfig_is_refused(tmp_path, missing):
    tree = _tree(tmp_path / "linux")
    (tree / missing).unlink()
    assert f"not a kernel source tree (no {missing})" in _usage(kernel_build.validate_source, tree)


@pytest.mark.parametrize("leftover", [".config", "include/config", "include/generated"])
def test_a_tree_configured_in_place_is_refused_for_out_of_tree_builds(tmp_path, leftover):
    tree = _tree(tmp_path / "linux")
    (tree / leftover).parent.mkdir(parents=True, exist_ok=True)
    (tree / leftover).write_text("CONFIG_X86=y\n") if leftover == ".config" else (tree / leftover).mkdir()
    message = _usage(kernel_build.validate_source, tree)
    assert "configured or built in place" in message and leftover in message and "O=" in message
    assert (tree / leftover).exists()  # nothing of the user's is touched


def test_a_tree_path_make_cannot_handle_is_refused(tmp_path):
    tree = _tree(tmp_path / "my linux")
    assert "cannot handle this path" in _usage(kernel_build.validate_source, tree)


@pytest.mark.parametrize("text,arch", [
    ("#\n# Linux/arm64 6.1.0 Kernel Configuration\n#\nCONFIG_ARM64=y\n", "arm64"),
    ("CONFIG_RISCV=y\nCONFIG_64BIT=y\n", "riscv"),  # no header: told by the arch symbol
])
def test_a_config_for_another_architecture_is_refused(tmp_path, text, arch):
    tree = _tree(tmp_path / "linux")
    config = tmp_path / "other.config"
    config.write_text(text)
    message = _usage(kernel_build.validate_source, tree, config)
    assert f"--config {config}: a config for ARCH={arch}" in message and "ARCH=x86" in message


def test_missing_config_and_fragment_files_are_named(tmp_path):
    tree = _tree(tmp_path / "linux")
    assert "--config /no/such: no such file" in _usage(kernel_build.validate_source, tree, "/no/such")
    assert "--fragment /no/frag: no such file" in _usage(kernel_build.validate_source, tree, None, ["/no/frag"])


def test_missing_build_tools_are_named_with_exit_1(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in kernel_build.TOOLS:
        if tool not in ("flex", "bison") and shutil.which(tool):
            (bindir / tool).symlink_to(shutil.which(tool))
    monkeypatch.setenv("PATH", str(bindir))
    with pytest.raises(WdimageError) as e:
        kernel_build.check_tools("debian")
    assert e.value.code == ExitCode.FAILED
    assert "flex" in e.value.message and "bison" in e.value.message and "dpkg-buildpackage" in e.value.message
    assert "make deps" in e.value.hint


def test_the_tree_fingerprint_follows_file_changes(tmp_path):
    tree = _tree(tmp_path / "linux")
    (tree / "kernel").mkdir()
    (tree / "kernel/fork.c").write_text("int x;\n")
    key = kernel_build.tree_key(tree)
    assert kernel_build.tree_key(tree) == key
    (tree / "kernel/fork.c").write_text("int xy;\n")
    assert kernel_build.tree_key(tree) != key


def test_models_always_include_the_seed_pair():
    assert kernel_build.models_for(Model.I6300ESB) == [Model.I6300ESB, Model.IB700]
    assert kernel_build.models_for(Model.ITCO) == [Model.ITCO, Model.I6300ESB, Model.IB700]


FAILING_MAKEFILE = """\
srctree := $(CURDIR)
bindeb-pkg:
\t@echo '  CC      kernel/ok.o'
\t$(CC) -c -o $(O)/ok.o $(srctree)/ok.c
\t@echo '  CC      kernel/broken.o'
\t$(CC) -c -o $(O)/broken.o $(srctree)/broken.c
"""


def test_a_failed_compile_shows_the_compiler_errors_and_where_the_log_is(tmp_path, monkeypatch):
    """A real make and gcc on a two-file 'tree' whose second file does not compile."""
    monkeypatch.setenv("WDIMAGE_CACHE", str(tmp_path / "cache"))
    tree = _tree(tmp_path / "linux")
    (tree / "Makefile").write_text(FAILING_MAKEFILE)
    (tree / "ok.c").write_text("int ok(void) { return 0; }\n")
    (tree / "broken.c").write_text("int broken(void) { return undeclared_thing; }\n")
    obj, logfile = tmp_path / "obj", tmp_path / "build.log"
    obj.mkdir()
    logfile.write_text("")
    with pytest.raises(WdimageError) as e:
        kernel_build._compile(tree, obj, "-wdimage-x", RELEASE, "bindeb-pkg", logfile)
    assert e.value.code == ExitCode.FAILED
    assert "exit code 2" in e.value.message
    assert "broken.c:1:" in e.value.message and "undeclared_thing" in e.value.message
    assert str(logfile) in e.value.hint and "nothing was published" in e.value.hint
    assert (obj / "ok.o").is_file() and "CC      kernel/ok.o" in logfile.read_text()


def test_progress_counts_the_compiled_files(tmp_path):
    logfile = tmp_path / "log"
    logfile.write_text("old line\n")
    progress = kernel_build._Progress(logfile)
    with open(logfile, "a") as f:
        f.write("  CC      kernel/fork.o\n  CC [M]  drivers/watchdog/i6300esb.o\n  LD      vmlinux.o\n")
    assert progress.line(120) == "2 min: 2 files compiled (now vmlinux.o)"
    with open(logfile, "a") as f:
        f.write("  CC      mm/slub.o\n")
    assert progress.line(180).startswith("3 min: 3 files compiled (now mm/slub.o)")


def _fake_build(tmp_path: Path) -> tuple[kernel_build.KernelBuild, Path, Path]:
    tree = tmp_path / "kernel-builds" / "0123456789abcdef"
    obj = tree / "obj"
    obj.mkdir(parents=True)
    (obj / ".config").write_text("CONFIG_WATCHDOG=y\n")
    for name in (f"linux-image-{RELEASE}_{RELEASE}-1_amd64.deb", f"linux-headers-{RELEASE}_{RELEASE}-1_amd64.deb",
                 f"linux-libc-dev_{RELEASE}-1_amd64.deb", f"linux-upstream_{RELEASE}-1_amd64.changes"):
        (tree / name).write_text(name)
    (tree / "linux-image-6.1.192-wdimage-ffffffff_6.1.192-wdimage-ffffffff-1_amd64.deb").write_text("other")
    logfile = tree / "logs/build.log"
    logfile.parent.mkdir()
    logfile.write_text("  CC      kernel/fork.o\n")
    kb = kernel_build.KernelBuild(
        src=tmp_path / "linux", version="6.1.192", release=RELEASE, config_sha256="0123abcd" * 8,
        base_config="defconfig + kvm_guest.config", fragments=("kconfig-fragments/watchdog.config",),
        compiler="gcc (Debian 12.2.0-14) 12.2.0", ccache=True, directory=tree / "debian-0123abcd0123abcd",
        seconds=700.0, cached=False)
    return kb, tree, logfile


def test_collect_moves_this_release_packages_into_the_cached_result(tmp_path):
    kb, tree, logfile = _fake_build(tmp_path)
    kernel_build._collect(kb, tree, tree / "obj", "bindeb-pkg", logfile)
    assert sorted(p.name for p in kb.packages.iterdir()) == [f"linux-image-{RELEASE}_{RELEASE}-1_amd64.deb"]
    beside = sorted(p.name for p in kb.directory.iterdir())
    assert f"linux-headers-{RELEASE}_{RELEASE}-1_amd64.deb" in beside and "config" in beside
    assert (kb.directory / "build.log").read_text() == logfile.read_text()
    # Another release's package stays where it was; nothing of this release is left behind.
    assert sorted(p.name for p in tree.glob("*.deb")) == [
        "linux-image-6.1.192-wdimage-ffffffff_6.1.192-wdimage-ffffffff-1_amd64.deb"]
    again = kernel_build._cached_facts(kb.directory)
    assert again == kb and again.to_manifest()["config_sha256"] == kb.config_sha256


def test_collect_without_a_kernel_package_fails_and_leaves_no_result(tmp_path):
    kb, tree, logfile = _fake_build(tmp_path)
    for deb in tree.glob("linux-image-*.deb"):
        deb.unlink()
    with pytest.raises(WdimageError, match="left no kernel package"):
        kernel_build._collect(kb, tree, tree / "obj", "bindeb-pkg", logfile)
    assert not kb.directory.exists() and kernel_build._cached_facts(kb.directory) is None


def test_dib_gets_the_packages_and_boots_only_the_compiled_kernel(tmp_path):
    kb, _, _ = _fake_build(tmp_path)
    tree = _tree(tmp_path / "src")
    settings = build.make_settings("debian", kernel="source", kernel_src=tree, output=tmp_path / "out",
                                   apt_sources=(), mirror="http://mirror.invalid/debian")
    inputs = build.write_inputs(settings, build.dib.Layout.DIRECT, root=tmp_path / "inputs")
    command = build.dib_command(settings, build.dib.Layout.DIRECT, inputs, tmp_path / "out/x", kernel=kb)
    env = dict(command.env)
    assert env["DIB_WDIMAGE_KERNEL_DIR"] == str(kb.packages)
    assert env["DIB_WDIMAGE_KERNEL_RELEASE"] == RELEASE
    assert env["DIB_BAREMETAL_KERNEL_PATTERN"] == f"vmlinuz-{RELEASE}"
    assert env["DIB_BAREMETAL_INITRD_PATTERN"] == f"initrd.img-{RELEASE}"
    assert command.elements[-2:] == ("wdimage-kernel", "wdimage-slim")


def test_the_default_guest_fragment_asks_for_the_boot_essentials_once():
    """guest-kernel.config is merged with proof (the real test builds with it); here: its shape."""
    fragment = kernel_build.fragments_dir() / kernel_build.GUEST_FRAGMENT
    lines = [line for line in fragment.read_text().splitlines() if line.startswith("CONFIG_")]
    assert "CONFIG_VIRTIO_BLK=y" in lines and "CONFIG_MODULES=y" in lines and len(lines) == len(set(lines))


def test_cache_dir_follows_wdimage_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("WDIMAGE_CACHE", str(tmp_path))
    assert kernel_build.kernel_builds_dir() == tmp_path / "kernel-builds"
    env = kernel_build._environment()
    if kernel_build._ccache_dir():
        assert env["PATH"].split(os.pathsep)[0] == "/usr/lib/ccache"
        assert env["CCACHE_DIR"] == os.environ.get("CCACHE_DIR", str(tmp_path / "ccache"))
    assert env["KBUILD_BUILD_USER"] == "wdimage"
    assert json.dumps(env)  # every value a string
