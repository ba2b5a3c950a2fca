"""Fidelity on real kernels: Debian's Linux 6.1, trixie's 6.12 and sid's 7.2 trees with Debian's own configs.

The bar (issue 2): with the watchdog symbols switched off, `wdimage kernel-config --merge` gives a config
that the kernel's own `make olddefconfig` leaves exactly as it is. Trees are fetched and extracted once into
${WDIMAGE_CACHE:-~/.cache/wdimage} by tests/kernel_trees.py.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # `tests.kernel_trees` when run by path

from tests.kernel_trees import KernelTree, kernel_tree, without_watchdog  # noqa: E402
from wdimage import log  # noqa: E402
from wdimage.cli import main  # noqa: E402
from wdimage.kconfig.fragments import fragment_paths  # noqa: E402
from wdimage.models import Model  # noqa: E402

pytestmark = pytest.mark.real

ALL_MODELS = ["--model", "i6300esb", "--model", "ib700", "--model", "itco"]
CASES = [("6.1", "amd64_none_amd64"), ("6.1", "amd64_none_cloud-amd64"), ("6.1", "amd64_rt_amd64"),
         ("6.12", "amd64_none_amd64"),  # trixie: between the two, with 6.11+'s choice rules but no `transitional`
         ("7.2", "amd64_none_amd64"), ("7.2", "amd64_none_cloud-amd64")]


@pytest.fixture(autouse=True)
def _restore_log_quiet(monkeypatch):
    monkeypatch.setattr(log, "quiet", log.quiet)  # main(["-q", ...]) sets it


@pytest.fixture(scope="module")
def trees() -> dict[str, KernelTree]:
    return {version: kernel_tree(version) for version in ("6.1", "6.12", "7.2")}


def make_olddefconfig(tree: KernelTree, config: Path) -> str:
    """Run the kernel's own `make olddefconfig` on `config` (in place) and return the result."""
    subprocess.run(["make", "-s", "-C", str(tree.src), f"KCONFIG_CONFIG={config}", "olddefconfig"],
                   check=True, stdout=subprocess.DEVNULL)
    return config.read_text()


def wdimage(capsys, *argv: str) -> tuple[int, str]:
    rc = main(["-q", "kernel-config", *argv, "--arch", "x86"])
    return rc, capsys.readouterr().out


@pytest.mark.parametrize("version, flavour", CASES)
def test_merged_config_is_a_fixed_point_of_make_olddefconfig(trees, tmp_path, capsys, version, flavour):
    tree = trees[version]
    config = tmp_path / ".config"
    before = without_watchdog(tree.config(flavour).read_text())
    config.write_text(before)
    rc, out = wdimage(capsys, "--merge", "--kernel-src", str(tree.src), "--config", str(config), *ALL_MODELS)
    assert rc == 0, out
    merged = config.read_text()
    assert (tmp_path / ".config.old").read_text() == before
    for line in ("CONFIG_WATCHDOG=y", "CONFIG_WATCHDOG_CORE=y", "CONFIG_I6300ESB_WDT=m", "CONFIG_IB700_WDT=m",
                 "CONFIG_ITCO_WDT=m", "CONFIG_LPC_ICH=m", "CONFIG_MAGIC_SYSRQ=y"):
        assert line in merged.splitlines()
    after = make_olddefconfig(tree, config)
    assert after.splitlines() == merged.splitlines()  # not one line changed
    rc, out = wdimage(capsys, "--check", "--strict", "--kernel-src", str(tree.src), "--config", str(config),
                      *ALL_MODELS)
    assert rc == 0, out


@pytest.mark.parametrize("version", ["6.1", "7.2"])
def test_merge_equals_the_kernels_own_merge_and_olddefconfig(trees, tmp_path, capsys, version):
    # What merge_config.sh does: append the fragments to the config, then `make olddefconfig`. wdimage's
    # result is that one, byte for byte (header, menu comments, every value).
    tree = trees[version]
    before = without_watchdog(tree.config().read_text())
    ours, theirs = tmp_path / "ours.config", tmp_path / "theirs.config"
    ours.write_text(before)
    rc, out = wdimage(capsys, "--merge", "--kernel-src", str(tree.src), "--config", str(ours), *ALL_MODELS)
    assert rc == 0, out
    models = [Model.I6300ESB, Model.IB700, Model.ITCO]
    theirs.write_text(before + "".join(p.read_text() for p in fragment_paths(models)))
    assert ours.read_text() == make_olddefconfig(tree, theirs)


def test_debian_kernel_passes_the_check_but_not_strict(trees, capsys):
    # Debian builds WATCHDOG_CORE as m: watchdog-ready, but not the exact values the fragments ask for.
    config = str(trees["6.1"].config())
    assert wdimage(capsys, "--check", "--config", config)[0] == 0
    rc, out = wdimage(capsys, "--check", "--config", config, "--strict")
    assert rc == 3 and "FAIL CONFIG_WATCHDOG_CORE: requested y, got m" in out


def test_debian_cloud_kernel_lacks_ib700_and_the_tree_says_why_not(trees, capsys):
    tree = trees["7.2"]
    rc, out = wdimage(capsys, "--check", "--config", str(tree.config("amd64_none_cloud-amd64")),
                      "--kernel-src", str(tree.src), "--json")
    assert rc == 3
    bad = {s["symbol"]: s for s in json.loads(out)["symbols"] if not s["ok"]}
    assert set(bad) == {"CONFIG_IB700_WDT"}
    assert bad["CONFIG_IB700_WDT"]["result"] == "n"
    assert bad["CONFIG_IB700_WDT"]["explanation"]["has_prompt"] is True


def test_unmet_dependency_on_a_real_tree(trees, tmp_path, capsys):
    tree = trees["6.1"]
    config = tmp_path / ".config"
    text = without_watchdog(tree.config().read_text()).replace("CONFIG_PCI=y", "# CONFIG_PCI is not set")
    config.write_text(text)
    rc, out = wdimage(capsys, "--merge", "--kernel-src", str(tree.src), "--config", str(config))
    assert rc == 3
    assert "FAIL CONFIG_I6300ESB_WDT: requested m, got n" in out
    assert "unmet dependencies: PCI (=n)" in out
    assert config.read_text() == text and not (tmp_path / ".config.old").exists()


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "kconfig"
FIXTURE_INPUTS = [
    "",
    "# CONFIG_EXPERT is not set\nCONFIG_MODULES=y\nCONFIG_OLD_NAME=m\nCONFIG_USB=m\nCONFIG_DUAL_ROLE=y\n",
    "CONFIG_EXPERT=y\nCONFIG_VMSPLIT_2G=y\n# CONFIG_MODULES is not set\nCONFIG_USB_GADGET=y\nCONFIG_DUAL_ROLE=y\n",
    "CONFIG_MODULES=y\nCONFIG_WATCHDOG=y\nCONFIG_I6300ESB_WDT=m\nCONFIG_BUILTIN_WDT_USER=y\n"
    "# CONFIG_PCI is not set\nCONFIG_HZ=5000\n",
    "CONFIG_MODULES=y\nCONFIG_FS_ENCRYPTION=y\nCONFIG_CRYPTO_CTS=m\nCONFIG_TSX_MODE_ON=y\nCONFIG_TSX_MODE_OFF=y\n",
    "# CONFIG_TSX_MODE_AUTO is not set\n",
    "# CONFIG_TSX_MODE_OFF is not set\n# CONFIG_TSX_MODE_ON is not set\n# CONFIG_TSX_MODE_AUTO is not set\n",
    "# CONFIG_TSX_MODE_AUTO is not set\n# CONFIG_TSX_MODE_ON is not set\n# CONFIG_TSX_MODE_OFF is not set\n",
    "CONFIG_STRICT_GP=y\nCONFIG_FANOUT_LEAF=16\n", "CONFIG_STRICT_GP=y\nCONFIG_FANOUT_LEAF=1\n",
]


@pytest.mark.parametrize("fixture, version", [("compat", "7.2"), ("watchdog", "6.1")])
def test_the_unit_test_fixtures_behave_as_under_the_kernels_own_conf(trees, tmp_path, fixture, version):
    # The tiny trees of the fast tier, run through the real scripts/kconfig/conf of the kernel whose
    # syntax they use: wdimage's resolution is conf's, byte for byte, for each input.
    from wdimage.kconfig.tree import parse_tree
    tree = trees[version]
    scratch = tmp_path / "scratch.config"
    scratch.write_text("")
    make_olddefconfig(tree, scratch)  # builds scripts/kconfig/conf if needed
    conf = tree.src / "scripts" / "kconfig" / "conf"
    copy = tmp_path / fixture  # conf writes include/config/ beside the Kconfig: not into the repository
    shutil.copytree(FIXTURES / fixture, copy)
    ours = parse_tree(copy, "x86", use_cache=False)
    for text in FIXTURE_INPUTS:
        ours.load_config_text(text, "input")
        theirs = tmp_path / "theirs.config"
        theirs.write_text(text)
        env = {"PATH": "/usr/bin:/bin", "srctree": ".", "ARCH": "x86", "SRCARCH": "x86",
               "KERNELVERSION": "6.1.0-fixture", "CC": "gcc", "KCONFIG_CONFIG": str(theirs)}
        subprocess.run([str(conf), "--olddefconfig", "Kconfig"], cwd=copy, env=env, check=True,
                       capture_output=True)
        assert ours.config_text() == theirs.read_text(), text


def _perturbed(config_text: str) -> str:
    """A resolved config made inconsistent: every 7th `is not set` turned on, every 11th `=y` turned off
    (choices end with several members or none, symbols set outside their dependencies)."""
    out = []
    for i, line in enumerate(config_text.splitlines()):
        if i % 7 == 0 and line.startswith("# CONFIG_") and line.endswith(" is not set"):
            line = f"{line[2:-11]}=y"
        elif i % 11 == 0 and line.startswith("CONFIG_") and line.endswith("=y"):
            line = f"# {line[:-2]} is not set"
        out.append(line)
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("version", ["6.1", "7.2"])
@pytest.mark.parametrize("seed", [3, 5])
def test_perturbed_randconfigs_resolve_as_make_olddefconfig_does(trees, tmp_path, version, seed):
    # Beyond Debian's configs: the kernel's own randconfig (fixed seeds), perturbed, then resolved by
    # wdimage's parse and by `make olddefconfig`. These seeds found the choice and imply differences.
    from wdimage.kconfig.tree import parse_tree
    tree = trees[version]
    config = tmp_path / "rand.config"
    subprocess.run(["make", "-s", "-C", str(tree.src), f"KCONFIG_CONFIG={config}", "randconfig"],
                   env={**os.environ, "KCONFIG_SEED": str(seed)}, check=True, capture_output=True)
    text = _perturbed(config.read_text())
    ours = parse_tree(tree.src, "x86")
    ours.load_config_text(text, "rand")
    config.write_text(text)
    assert ours.config_text() == make_olddefconfig(tree, config)


def test_where_make_olddefconfig_is_not_idempotent_ours_is_its_fixed_point(trees, tmp_path):
    # Linux 6.1, randconfig seed 15, perturbed: SMP turned on with NR_CPUS=1, now below its range (2-512).
    # The C code resets NR_CPUS to 64 after it has computed, and cached, the visibility of
    # RCU_STRICT_GRACE_PERIOD (`depends on NR_CPUS <= 4`) with the old value, so its first pass writes a
    # line that its second pass drops. wdimage resolves in one pass to what make reaches in two.
    from wdimage.kconfig.tree import parse_tree
    tree = trees["6.1"]
    config = tmp_path / "rand.config"
    subprocess.run(["make", "-s", "-C", str(tree.src), f"KCONFIG_CONFIG={config}", "randconfig"],
                   env={**os.environ, "KCONFIG_SEED": "15"}, check=True, capture_output=True)
    text = _perturbed(config.read_text())
    assert "CONFIG_SMP=y" in text.splitlines() and "CONFIG_NR_CPUS=1" in text.splitlines()
    ours = parse_tree(tree.src, "x86")
    ours.load_config_text(text, "rand")
    config.write_text(text)
    first = make_olddefconfig(tree, config)
    second = make_olddefconfig(tree, config)
    assert "# CONFIG_RCU_STRICT_GRACE_PERIOD is not set" in first.splitlines()
    assert first != second
    assert ours.config_text() == second
