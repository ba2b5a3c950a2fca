"""The kconfiglib 14.1.0 compatibility layer, on tiny Kconfig trees with the syntax of Linux 6.1 and 7.2."""

from pathlib import Path

import kconfiglib
import pytest

from wdimage.errors import WdimageError
from wdimage.kconfig import compat as kconfig_compat
from wdimage.kconfig.tree import parse_tree

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "kconfig"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("WDIMAGE_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def compat():
    return parse_tree(FIXTURES / "compat", "x86", use_cache=False)


def test_pinned_kconfiglib_is_the_one_the_patches_were_written_for():
    # If this fails, kconfiglib changed underneath wdimage: re-check every patch in kconfig_compat
    # against the new version before updating PINNED_VERSION / PINNED_SHA256.
    assert tuple(kconfiglib.VERSION) == kconfig_compat.PINNED_VERSION
    assert kconfig_compat.installed_sha256() == kconfig_compat.PINNED_SHA256


def test_a_different_kconfiglib_is_refused(monkeypatch):
    monkeypatch.setattr(kconfiglib, "VERSION", (14, 2, 0))
    with pytest.raises(kconfig_compat.IncompatibleKconfiglib, match="14.1.0"):
        kconfig_compat.check_pinned()


def test_plain_kconfiglib_cannot_parse_the_fixture():
    # The gap the layer fills: without it, the bare `modules` line is a parse error.
    with pytest.raises(kconfiglib.KconfigError):
        kconfiglib.Kconfig(str(FIXTURES / "watchdog" / "Kconfig"), warn_to_stderr=False)


def test_bare_modules_marks_the_modules_symbol(compat):
    compat.load_config_text("CONFIG_MODULES=y\n", "t")
    assert compat.modules_enabled()
    compat.load_config_text("# CONFIG_MODULES is not set\nCONFIG_NEW_NAME=m\n", "t")
    assert not compat.modules_enabled()
    assert compat.value("NEW_NAME") == "y"  # m is promoted to y without modules, as in symbol.c


def test_macro_arguments_keep_their_commas(compat):
    compat.load_config_text("", "t")
    assert compat.value("FIRST_ARG") == "a,b"
    assert compat.value("SECOND_ARG") == "c"


def test_as_instr_runs_the_assembler_with_the_whole_instruction(compat):
    compat.load_config_text("", "t")
    assert compat.value("AS_HAS_TWO_OPERANDS") == "y"
    assert compat.value("AS_HAS_BOGUS") == "n"


def test_error_if_with_a_comma_in_its_message_stops_the_parse():
    with pytest.raises(WdimageError, match="Sorry, this C compiler is not supported"):
        parse_tree(FIXTURES / "compat-error", "x86", use_cache=False)


def test_transitional_symbol_feeds_its_successor_and_is_not_written(compat):
    compat.load_config_text("CONFIG_MODULES=y\nCONFIG_OLD_NAME=m\n", "t")
    assert compat.value("NEW_NAME") == "m"
    text = compat.config_text()
    assert "CONFIG_NEW_NAME=m" in text
    assert "OLD_NAME" not in text


def test_conditional_dependency(compat):
    compat.load_config_text("CONFIG_MODULES=y\nCONFIG_USB=y\nCONFIG_DUAL_ROLE=y\n", "t")
    assert compat.value("DUAL_ROLE") == "y"  # USB_GADGET=n: only USB counts
    compat.load_config_text("CONFIG_MODULES=y\nCONFIG_USB=m\nCONFIG_DUAL_ROLE=y\n", "t")
    assert compat.value("DUAL_ROLE") == "m"  # bounded by USB
    compat.load_config_text("CONFIG_MODULES=y\nCONFIG_DUAL_ROLE=y\n", "t")
    assert compat.value("DUAL_ROLE") == "n"  # neither: `depends on USB_GADGET if !USB` fails


def test_implied_symbol_with_unmet_dependencies_is_written_as_not_set(compat):
    compat.load_config_text("", "t")
    assert "# CONFIG_LAYOUTS is not set" in compat.config_text()


def test_int_without_default_is_zero_where_the_tree_says_so(compat):
    compat.load_config_text("", "t")
    assert compat.value("FORCE_MAX_ORDER") == "0"
    assert compat.value("BLOCK_ORDER") == "10"


def test_header_is_the_one_scripts_kconfig_writes(compat):
    compat.load_config_text("", "t")
    assert compat.config_text().startswith(
        "#\n# Automatically generated file; DO NOT EDIT.\n# Linux/x86 6.1.0-fixture Kernel Configuration\n#\n")


def test_choice_members_of_a_hidden_prompt_are_written_in_menu_choice_trees(compat):
    # Linux 6.11+ (the compat fixture's symbol.c says so): the prompt's `if EXPERT` does not hide members.
    compat.load_config_text("# CONFIG_EXPERT is not set\n", "t")
    assert "CONFIG_VMSPLIT_3G=y" in compat.config_text().splitlines()
    compat.load_config_text("# CONFIG_EXPERT is not set\nCONFIG_VMSPLIT_2G=y\n", "t")
    assert compat.value("VMSPLIT_2G") == "y" and compat.value("VMSPLIT_3G") == "n"


def test_choice_members_of_a_hidden_prompt_are_not_written_in_older_trees():
    # Linux 6.1's scripts/kconfig (the watchdog fixture has no symbol.c markers): the choice hides them.
    tree = parse_tree(FIXTURES / "watchdog", "x86", use_cache=False)
    tree.load_config_text("# CONFIG_EXPERT is not set\nCONFIG_VMSPLIT_2G=y\n", "t")
    assert "VMSPLIT" not in tree.config_text()
    tree.load_config_text("CONFIG_EXPERT=y\nCONFIG_VMSPLIT_2G=y\n", "t")
    assert "CONFIG_VMSPLIT_2G=y" in tree.config_text().splitlines()


def test_imply_of_y_keeps_a_users_m(compat):
    compat.load_config_text("CONFIG_MODULES=y\nCONFIG_FS_ENCRYPTION=y\nCONFIG_CRYPTO_CTS=m\n", "t")
    assert compat.value("CRYPTO_CTS") == "m"
    compat.load_config_text("CONFIG_MODULES=y\nCONFIG_FS_ENCRYPTION=y\n", "t")
    assert compat.value("CRYPTO_CTS") == "y"  # no user value: the imply gives y


@pytest.mark.parametrize("text, chosen", [
    ("", "TSX_MODE_AUTO"),  # the default
    ("CONFIG_TSX_MODE_ON=y\nCONFIG_TSX_MODE_OFF=y\n", "TSX_MODE_OFF"),  # the last one read as y
    ("# CONFIG_TSX_MODE_AUTO is not set\n", "TSX_MODE_OFF"),  # default read as n: first one not read
    ("# CONFIG_TSX_MODE_OFF is not set\n# CONFIG_TSX_MODE_ON is not set\n# CONFIG_TSX_MODE_AUTO is not set\n",
     "TSX_MODE_OFF"),  # all read as n: the one read first
    ("# CONFIG_TSX_MODE_AUTO is not set\n# CONFIG_TSX_MODE_ON is not set\n# CONFIG_TSX_MODE_OFF is not set\n",
     "TSX_MODE_AUTO"),
])
def test_choice_selection_follows_sym_calc_choice(compat, text, chosen):
    compat.load_config_text(text, "t")
    assert [s for s in ("TSX_MODE_OFF", "TSX_MODE_ON", "TSX_MODE_AUTO") if compat.value(s) == "y"] == [chosen]


def test_out_of_range_int_user_value_is_clamped_in_newer_trees(compat):
    compat.load_config_text("CONFIG_STRICT_GP=y\nCONFIG_FANOUT_LEAF=16\n", "t")
    assert compat.value("FANOUT_LEAF") == "3"
    compat.load_config_text("CONFIG_STRICT_GP=y\nCONFIG_FANOUT_LEAF=1\n", "t")
    assert compat.value("FANOUT_LEAF") == "2"
    compat.load_config_text("CONFIG_FANOUT_LEAF=16\n", "t")
    assert compat.value("FANOUT_LEAF") == "16"


def test_out_of_range_int_user_value_falls_back_to_the_default_in_older_trees():
    tree = parse_tree(FIXTURES / "watchdog", "x86", use_cache=False)
    tree.load_config_text("CONFIG_STRICT_GP=y\nCONFIG_FANOUT_LEAF=16\n", "t")
    assert tree.value("FANOUT_LEAF") == "2"
