"""wdimage drill --libvirt without a daemon: options, consent, and the no-watchdog diagnosis on libvirt's own
in-process test driver (test:///default, whose domain "test" has no watchdog). The drill itself runs against a
real libvirtd in tests/real/test_libvirt.py."""

from pathlib import Path

import pytest

from wdimage import cli
from wdimage.drill import libvirt as libvirt_drill
from wdimage.drill.scenarios import SCENARIOS
from wdimage.errors import ExitCode, WdimageError
from wdimage.image import render
from wdimage.models import Action, Model, info
from wdimage.vm import libvirt_guest

TEST_URI = "test:///default"


def test_faults_need_consent_and_nothing_is_touched_without_it(capsys):
    code = cli.main(["drill", "--libvirt", "no-such-domain", "--connect", TEST_URI, "--fault", "panic"])
    err = capsys.readouterr().err
    assert code == ExitCode.USAGE and "--yes-crash-it" in err and "no-such-domain" in err
    assert "Domain not found" not in err  # refused before connecting


def test_the_default_all_needs_consent_too(capsys):
    assert cli.main(["drill", "--libvirt", "test", "--connect", TEST_URI]) == ExitCode.USAGE
    assert "--yes-crash-it" in capsys.readouterr().err


def test_a_domain_without_watchdog_gets_the_fix_and_exit_1(capsys):
    code = cli.main(["drill", "--libvirt", "test", "--connect", TEST_URI, "--fault", "healthy"])
    err = capsys.readouterr().err
    assert code == ExitCode.FAILED
    assert "has no watchdog device" in err and '<watchdog model="i6300esb" action="reset"/>' in err
    assert "virsh edit test" in err


@pytest.mark.parametrize("argv, option", [
    (["drill", "out/x", "--libvirt", "test"], "DIR"),
    (["drill", "--libvirt", "test", "--machine", "q35"], "--machine"),
    (["drill", "out/x", "--connect", TEST_URI], "--connect"),
    (["drill", "out/x", "--yes-crash-it"], "--yes-crash-it"),
    (["drill"], "DIR"),
    (["drill", "--libvirt", "a/b", "--fault", "healthy"], "--libvirt"),
    (["drill", "--libvirt", "test", "--connect", "no uri", "--fault", "healthy"], "--connect"),
    (["drill", "--libvirt", "nope", "--connect", TEST_URI, "--fault", "healthy"], "--libvirt nope"),
])
def test_bad_options_exit_2_naming_the_option(argv, option, capsys):
    assert cli.main(argv) == ExitCode.USAGE
    assert option in capsys.readouterr().err


def test_expectations_from_the_domain_and_the_guests_watchdog_conf():
    conf = "watchdog-timeout = 20\n  interval=4   # keepalive\n"
    setup, notes = libvirt_drill.expectations("web1", {"model": "ib700", "action": "poweroff"}, conf)
    assert (setup.model, setup.action, setup.timeout, setup.interval) == (Model.IB700, Action.POWEROFF, 20, 4)
    assert "watchdog-timeout 20s" in notes[-1]


def test_expectations_fall_back_to_the_daemons_defaults_and_say_so():
    setup, notes = libvirt_drill.expectations("web1", {"model": "i6300esb", "action": "dump"}, "")
    assert (setup.action, setup.timeout, setup.interval) == (Action.PAUSE, 60, 1)
    assert "dump" in notes[0] and "daemon default" in notes[-1]


def test_a_model_wdimage_does_not_drill():
    with pytest.raises(WdimageError) as e:
        libvirt_drill.expectations("wd", {"model": "pcwd", "action": "reset"}, "")
    assert e.value.code == ExitCode.FAILED and "pcwd" in e.value.message


def test_an_s390x_domains_diag288_is_drilled_with_its_range():
    setup, _ = libvirt_drill.expectations("s390", {"model": "diag288", "action": "reset"}, "")
    assert setup.model is Model.DIAG288


def test_domain_check_is_the_checklists_first_question():
    assert libvirt_drill.domain_check("d", {"model": "i6300esb", "action": "reset"}).passed
    check = libvirt_drill.domain_check("d", None)
    assert not check.passed and "virsh edit d" in check.fix


@pytest.mark.parametrize("model", [m for m in Model if not info(m).refused])
@pytest.mark.parametrize("action", [Action.RESET, Action.SHUTDOWN, Action.POWEROFF, Action.PAUSE, Action.NONE,
                                    Action.INJECT_NMI])
def test_the_domain_wdimage_writes_is_drilled_as_built(model, action):
    """render's <watchdog> (or q35's iTCO on the QEMU command line) read back by the drill: the same model and
    action, through the one vocabulary table in wdimage.models."""
    guest = render.GuestFiles(name="wd", model=model, action=action, image="x.qcow2", kernel=None, initrd=None,
                              cmdline=None, agent=True, arch=info(model).arches[0])
    watchdog = libvirt_guest.domain_watchdog(render.render_libvirt_xml(guest, Path("/srv"), "qemu"))
    setup, _ = libvirt_drill.expectations("wd", watchdog, "")
    assert (setup.model, setup.action) == (model, action)


def test_only_the_harmless_rows_run_without_consent():
    assert [s.name for s in SCENARIOS.values() if s.harmless] == ["healthy", "proof"]
    libvirt_drill.check_options("web1", None, ["healthy"], yes_crash_it=False)  # no exit 2
    with pytest.raises(WdimageError, match="--yes-crash-it: the drill would run stop, all"):
        libvirt_drill.check_options("web1", None, ["healthy", "stop", "all"], yes_crash_it=False)
    libvirt_drill.check_options("web1", None, ["healthy", "stop", "all"], yes_crash_it=True)
