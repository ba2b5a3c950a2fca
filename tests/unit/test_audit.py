"""wdimage audit without a daemon: the host side on domain XML fixtures, verdict selection on probe outputs,
the outputs (JSON, JUnit, Prometheus read back with prometheus_client's own parser), the bounded runner, the
read-only view refusing whatever is not reading, and bad input (exit 2). The read-only view and the command run
against libvirt's in-process test driver (test:///default), real libvirt without a daemon; the audit of booted
guests is tests/real/test_audit.py."""

import ast
import html.parser
import json
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from wdimage import cli
from wdimage.audit import domain as audit_domain, fleet, host, outputs, pages
from wdimage.audit.domain import DomainAudit, judge_guest
from wdimage.audit.verdicts import VERDICTS, Verdict, exit_code
from wdimage.drill.checks import GUEST_PROBE, evaluate_checks, parse_sections
from wdimage.errors import ExitCode
from wdimage.jsonfile import AUDIT
from wdimage.models import ACTIONS, Action, Recovery
from wdimage.vm import libvirt_guest

FIXTURES = Path(__file__).parents[1] / "fixtures" / "audit"
TEST_URI = "test:///default"
QEMU_72, LIBVIRT_90 = (7, 2, 0), (9, 0, 0)


def side(name: str, qemu=QEMU_72, libvirt=LIBVIRT_90) -> host.HostSide:
    return host.analyse((FIXTURES / f"{name}.xml").read_text(), qemu, libvirt)


def probe(**replace: str) -> dict[str, str]:
    """The armed i6300esb guest's probe output, with some sections replaced."""
    sections = parse_sections((FIXTURES / "probe-i6300esb-armed.txt").read_text())
    sections.update(replace)
    return sections


def itco_probe() -> dict[str, str]:
    return probe(driver="[ 2.1] iTCO_wdt iTCO_wdt.1.auto: initialized. heartbeat=10 sec (nowayout=0)",
                 module="iTCO_wdt 16384 1 - Live 0x0", identity="watchdog0: iTCO_wdt", timeout="10",
                 **{"conf-timeout": "watchdog-timeout = 10"})


# --- the host side ---------------------------------------------------------------------------------------------

def test_q35_without_the_override_has_an_itco_that_cannot_fire():
    s = side("q35-itco-pinned")
    (itco,) = s.devices
    assert (itco.model, itco.origin, itco.fires, itco.action) == ("itco", "q35", False, "reset")
    assert "pins ICH9-LPC.noreboot to true on pc-q35-7.2" in itco.why and s.primary is itco and s.agent_channel


def test_q35_with_the_commandline_override_fires():
    (itco,) = side("q35-itco-override").devices
    assert itco.fires and "noreboot=false" in itco.why and itco.recovers
    assert side("q35-itco-override").commandline_override


def test_no_watchdog_on_pc_is_no_device():
    s = side("pc-no-watchdog")
    assert s.devices == () and s.primary is None and s.machine == "pc-i440fx-7.2"


def test_ib700_on_q35_is_the_device_acted_on_beside_a_pinned_itco():
    s = side("q35-ib700")
    assert [(d.model, d.fires) for d in s.devices] == [("ib700", True), ("itco", False)]
    assert s.primary.model == "ib700" and not s.agent_channel


def test_action_none_is_fed_but_recovers_nothing():
    s = side("pc-action-none")
    assert s.primary.model == "i6300esb" and s.primary.fires and not s.primary.recovers
    assert "does nothing" in s.primary.action_effect


@pytest.mark.parametrize("qemu, machine, pinned", [
    ((7, 2, 0), "pc-q35-7.2", True), ((7, 2, 0), "pc-q35-7.1", True), ((7, 1, 0), "q35", True),
    ((8, 2, 0), "pc-q35-7.2", True), ((8, 2, 0), "pc-q35-8.0", False), ((9, 0, 0), "pc-q35-9.0", False),
    ((7, 2, 0), "pc-i440fx-7.2", False),
])
def test_the_noreboot_pin_table(qemu, machine, pinned):
    assert (host.noreboot_pinned(qemu, machine) is not None) is pinned


def test_libvirt_that_knows_the_itco_model_turns_the_pin_off():
    xml = (FIXTURES / "q35-itco-pinned.xml").read_text().replace(
        "<devices>", '<devices><watchdog model="itco" action="reset"/>')
    (itco,) = host.analyse(xml, QEMU_72, (9, 1, 0)).devices
    assert itco.fires and "libvirt 9.1" in itco.why
    (itco,) = host.analyse(xml, QEMU_72, LIBVIRT_90).devices
    assert not itco.fires


def test_the_action_rows_say_who_recovers_a_hung_guest():
    assert ACTIONS[Action.RESET].recovery is Recovery.ITSELF and ACTIONS[Action.RESET].recovers
    assert ACTIONS[Action.POWEROFF].host_acts and not ACTIONS[Action.POWEROFF].recovers
    assert ACTIONS[Action.PAUSE].recovery is Recovery.RESUME
    assert {a for a, row in ACTIONS.items() if not row.host_acts} == {
        Action.NONE, Action.DEBUG, Action.SHUTDOWN, Action.PAUSE, Action.INJECT_NMI}


# --- verdict selection -----------------------------------------------------------------------------------------

def judge(sections, fixture="pc-action-none", action=None) -> DomainAudit:
    xml = (FIXTURES / f"{fixture}.xml").read_text()
    if action:
        xml = xml.replace('action="none"', f'action="{action}"')
    return judge_guest(DomainAudit("h", "d"), sections, host.analyse(xml, QEMU_72, LIBVIRT_90))


def test_a_fed_i6300esb_with_reset_is_armed():
    result = judge(probe(), action="reset")
    assert result.verdict is Verdict.ARMED and result.notes == [], result.reason
    assert all(c.passed for c in result.checks)


def test_the_same_guest_with_action_none_cannot_fire_and_says_which_action():
    result = judge(probe())
    assert result.verdict is Verdict.CANNOT_FIRE and "action none" in result.reason
    assert 'action="reset"' in result.fix


def test_a_fed_itco_on_pinned_q35_cannot_fire():
    result = judge(itco_probe(), "q35-itco-pinned")
    assert result.verdict is Verdict.CANNOT_FIRE and "noreboot" in result.reason
    assert "ICH9-LPC.noreboot=false" in result.fix


def test_the_same_itco_with_the_override_is_armed():
    assert judge(itco_probe(), "q35-itco-override").verdict is Verdict.ARMED


@pytest.mark.parametrize("replace, check, in_fix", [
    ({"config": "23:#watchdog-device = /dev/watchdog"}, "config", "on line 23 of /etc/watchdog.conf"),
    ({"service": "systemd: inactive", "holders": ""}, "service", "systemctl enable --now watchdog"),
    ({"blacklist": "/etc/modprobe.d/blacklist-watchdog.conf:3:blacklist i6300esb", "module": "", "driver": ""},
     "blacklist", "blacklist-watchdog.conf:3"),
    ({"holders": "1 systemd /dev/watchdog0 S 1", "runtime-watchdog": "30s"}, "runtime-watchdog",
     "RuntimeWatchdogSec=off"),
    ({"holders": "377 wd_keepalive /dev/watchdog S 300"}, "other-holder", "wd_keepalive"),
    ({"identity": "watchdog0: iTCO_wdt\nwatchdog1: i6300ESB timer"}, "acted-on", "blacklist iTCO_wdt"),
    ({"conf-timeout": "watchdog-timeout = 4000", "timeout": "30"}, "timeout-range", "1..2046"),
])
def test_the_first_failing_check_decides_not_armed_with_its_fix(replace, check, in_fix):
    result = judge(probe(**replace), action="reset")
    assert result.verdict is Verdict.NOT_ARMED
    first = next(c for c in result.checks if not c.passed and c.name in audit_domain.DECIDES)
    assert first.name == check and first.title in result.reason and in_fix in result.fix, result.fix


def test_advisories_are_notes_and_leave_the_verdict():
    result = judge(probe(nowayout="watchdog0: 1", kexec="1"), action="reset")
    assert result.verdict is Verdict.ARMED
    assert any("nowayout=1" in n for n in result.notes) and any("kexec_crash_loaded=1" in n for n in result.notes)


def test_the_drill_keeps_its_own_checklist():
    names = [c.name for c in evaluate_checks(probe(), "i6300esb", 15)]
    assert names == ["driver", "module", "device", "service", "config", "holder", "panic", "identity", "kexec",
                     "timeout"]
    assert "### blacklist" in GUEST_PROBE and "### nowayout" in GUEST_PROBE


def test_an_upgrade_keeps_the_earlier_verdict():
    result = judge(probe(), action="reset")
    result.upgrade(Verdict.NOT_ARMED, "later finding")
    assert result.history == [{"verdict": "armed", "reason": result.history[0]["reason"]}]
    assert result.verdict is Verdict.NOT_ARMED


# --- the outputs -----------------------------------------------------------------------------------------------

def sample_report() -> fleet.AuditReport:
    armed = judge(probe(), action="reset")
    armed.domain, armed.host, armed.timeout = "web1", "qemu:///system", 15
    seed = judge(probe(config="23:#watchdog-device = /dev/watchdog"), action="reset")
    seed.domain, seed.host = "db1", "qemu:///system"
    itco = judge(itco_probe(), "q35-itco-pinned")
    itco.domain, itco.host = "q35", "qemu:///system"
    unknown = DomainAudit("qemu:///system", "off1", state="shutoff").decide(Verdict.UNKNOWN, "shutoff")
    dead = fleet.HostReport("qemu+ssh://root@gone/system", error="Cannot recv data: Connection reset by peer")
    hosts = [fleet.HostReport("qemu:///system", reached="qemu:///system",
                              facts={"hypervisor": "QEMU", "hypervisor_version": (7, 2, 0),
                                     "libvirt_version": (9, 0, 0)}, domains=["web1", "db1", "q35", "off1"]), dead]
    errors = [audit_domain.error_result(dead.label, "", f"host unreachable: {dead.error}")]
    return fleet.AuditReport(hosts, [armed, seed, itco, unknown, *errors], started=1796600000.0, seconds=2.5)


def test_json_is_the_documented_schema():
    data = outputs.report_json(sample_report())
    assert AUDIT.accepts(data) and data["schema"] == 1 and data["exit_code"] == 1
    assert data["summary"] == {"armed": 1, "not-armed": 1, "cannot-fire": 1, "unknown": 1, "error": 1,
                               "proven": 0, "proof-failed": 0}  # every verdict row counted
    web1 = next(d for d in data["domains"] if d["domain"] == "web1")
    assert (web1["verdict"], web1["model"], web1["action"], web1["timeout"]) == ("armed", "i6300esb", "reset", 15)
    documented = (Path(__file__).parents[2] / "docs" / "audit.md").read_text()
    for key in [*data, *web1, *data["hosts"][0]]:
        assert f"`{key}`" in documented, f"docs/audit.md does not document {key}"


def test_junit_has_one_case_per_domain_with_the_verdicts_outcome():
    from junitparser import Error, Failure, JUnitXml, Skipped

    path_text = outputs.report_junit(sample_report())
    xml = JUnitXml.fromstring(path_text)
    cases = {case.name: case for suite in xml for case in suite}
    assert set(cases) == {"web1", "db1", "q35", "off1", "host"}
    assert cases["web1"].is_passed
    assert isinstance(cases["db1"].result[0], Failure) and "line 23" in cases["db1"].result[0].message
    assert isinstance(cases["q35"].result[0], Failure)
    assert isinstance(cases["off1"].result[0], Skipped) and isinstance(cases["host"].result[0], Error)


def test_prometheus_reads_back_with_its_own_parser():
    families = {f.name: f for f in text_string_to_metric_families(outputs.report_prometheus(sample_report()))}
    armed = {(s.labels["domain"], s.labels["model"], s.labels["action"]): s.value
             for s in families["wdimage_watchdog_armed"].samples}
    assert armed == {("web1", "i6300esb", "reset"): 1.0, ("db1", "i6300esb", "reset"): 0.0,
                     ("q35", "itco", "reset"): 0.0, ("off1", "", ""): 0.0}
    states = {(s.labels["domain"], s.labels["wdimage_watchdog_verdict"]): s.value
              for s in families["wdimage_watchdog_verdict"].samples}
    assert states[("q35", "cannot-fire")] == 1.0 and states[("q35", "armed")] == 0.0
    assert {s.labels["domain"]: s.value for s in families["wdimage_watchdog_timeout_seconds"].samples} == {
        "web1": 15, "db1": 15, "q35": 10}
    assert {s.labels["host"]: s.value for s in families["wdimage_audit_host_up"].samples} == {
        "qemu:///system": 1.0, "qemu+ssh://root@gone/system": 0.0}
    assert families["wdimage_audit_timestamp_seconds"].samples[0].value == 1796600000.0


def test_the_table_groups_by_host_with_fixes():
    text = outputs.render_text(sample_report())
    assert "Host qemu:///system (QEMU 7.2.0, libvirt 9.0.0)" in text and "Host qemu+ssh://root@gone/system" in text
    assert "fix: uncomment `watchdog-device = /dev/watchdog` on line 23" in text
    assert "ERROR" in text and "Connection reset by peer" in text
    assert text.splitlines()[-1].startswith("4 domain(s) on 2 host(s)")


def test_every_verdict_is_a_row_and_the_exit_code_comes_from_them():
    assert set(VERDICTS) == set(Verdict)
    assert exit_code([Verdict.ARMED, Verdict.ARMED]) == 0 and exit_code([Verdict.ARMED, Verdict.UNKNOWN]) == 1
    assert exit_code([]) == 1


# --- concurrency -----------------------------------------------------------------------------------------------

def test_a_hung_task_never_holds_up_the_others():
    def hung():
        time.sleep(30)

    started = time.monotonic()
    results = fleet.run_bounded([hung, lambda: "b", lambda: "c"], jobs=1, deadline=0.5,
                                on_timeout=lambda i, s: f"timeout {i}", on_error=lambda i, e: f"error {i}")
    assert results == ["timeout 0", "b", "c"] and time.monotonic() - started < 3


def test_tasks_run_concurrently_and_errors_become_results():
    def slow():
        time.sleep(0.5)
        return "ok"

    def broken():
        raise RuntimeError("boom")

    started = time.monotonic()
    results = fleet.run_bounded([slow] * 4 + [broken], jobs=5, deadline=10, on_timeout=lambda i, s: None,
                                on_error=lambda i, e: str(e))
    assert results == ["ok"] * 4 + ["boom"] and time.monotonic() - started < 1.5


# --- the read-only view (libvirt's test driver) and the command -------------------------------------------------

MUTATING = {"create", "createWithFlags", "destroy", "destroyFlags", "reset", "reboot", "shutdown", "suspend",
            "resume", "defineXML", "defineXMLFlags", "undefine", "undefineFlags", "migrate", "migrate2", "migrate3",
            "migrateToURI", "migrateToURI3", "qemuMonitorCommand", "updateDeviceFlags", "attachDevice",
            "detachDevice", "setVcpus", "setMemory", "managedSave", "save", "setAutostart", "injectNMI",
            "sendKey", "setMetadata", "snapshotCreateXML"}


def test_the_read_only_view_refuses_what_is_not_reading():
    view = libvirt_guest.ReadOnlyHost(TEST_URI, frozenset({GUEST_PROBE}))
    try:
        domain = view.domain("test")
        assert domain.state() == "running" and "<name>test</name>" in domain.xml()
        for name in ("destroy", "reset", "create", "suspend", "migrate", "qemuMonitorCommand", "_domain_destroy"):
            with pytest.raises(libvirt_guest.ReadOnlyRefused):
                getattr(domain, name)()
        with pytest.raises(libvirt_guest.ReadOnlyRefused):
            view.defineXML("<domain/>")
        for command in ("guest-shutdown", "guest-exec", "guest-file-open", "guest-set-time", "guest-fsfreeze-freeze"):
            with pytest.raises(libvirt_guest.ReadOnlyRefused):
                domain.agent(command)
        with pytest.raises(libvirt_guest.ReadOnlyRefused):
            domain.run("echo c > /proc/sysrq-trigger")
        with pytest.raises(libvirt_guest.AgentUnavailable) as refused:  # allowed, and the test driver has no agent
            domain.agent("guest-ping")
        assert refused.value.connected is False
    finally:
        view.close()
    assert domain.state() == "running"


def test_the_read_only_classes_call_nothing_that_changes_a_domain():
    tree = ast.parse(Path(libvirt_guest.__file__).read_text())
    called = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name in ("ReadOnlyHost", "ReadOnlyDomain"):
            called |= {n.func.attr for n in ast.walk(node) if isinstance(n, ast.Call)
                       and isinstance(n.func, ast.Attribute)}
    assert called and not called & MUTATING, called & MUTATING


@pytest.fixture
def test_domains():
    """Domains defined in the test driver for one test: a shut-off one with a watchdog, a running one with a
    watchdog and an agent channel (the test driver has no agent)."""
    import libvirt

    conn = libvirt.open(TEST_URI)
    made = []
    for name, start in (("audit-off", False), ("audit-run", True)):
        xml = (FIXTURES / "pc-action-none.xml").read_text().replace("pc-none", name).replace(
            'action="none"', 'action="reset"').replace(' machine="pc-i440fx-7.2"', "")
        domain = conn.defineXML(xml)
        if start:
            domain.create()
        made.append(domain)
    yield
    for domain in made:
        if domain.isActive():
            domain.destroy()
        domain.undefine()
    conn.close()


def test_audit_of_the_test_driver(test_domains, tmp_path, capsys):
    paths = {k: tmp_path / f"a.{k}" for k in ("json", "xml", "prom", "html")}
    code = cli.main(["audit", "--connect", TEST_URI, "--connect", "qemu:///system?socket=/nonexistent/sock",
                     "--all", "--json", str(paths["json"]), "--junit", str(paths["xml"]),
                     "--prometheus", str(paths["prom"]), "--html", str(paths["html"])])
    out = capsys.readouterr().out
    data = json.loads(paths["json"].read_text())
    verdicts = {(d["host"], d["domain"]): d["verdict"] for d in data["domains"]}
    assert code == ExitCode.FAILED, out
    assert verdicts[(TEST_URI, "test")] == "not-armed"
    assert verdicts[(TEST_URI, "audit-off")] == "unknown" and verdicts[(TEST_URI, "audit-run")] == "unknown"
    assert verdicts[("qemu:///system?socket=/nonexistent/sock", None)] == "error"
    run = next(d for d in data["domains"] if d["domain"] == "audit-run")
    assert "is qemu-guest-agent running" in run["reason"] and run["model"] == "i6300esb"
    assert next(d for d in data["domains"] if d["domain"] == "audit-off")["state"] == "shutoff"
    assert "host unreachable" in out
    page = _Page()
    page.feed(paths["html"].read_text())
    assert {(r["domain"], r["verdict"]) for r in page.rows} == {(d["domain"] or "", d["verdict"])
                                                                 for d in data["domains"]}
    # replaced without --force the next time: they are the audit's own
    assert cli.main(["audit", "--connect", TEST_URI, "audit-off", "--json", str(paths["json"]),
                     "--junit", str(paths["xml"]), "--prometheus", str(paths["prom"]),
                     "--html", str(paths["html"])]) == ExitCode.FAILED
    import libvirt
    conn = libvirt.open(TEST_URI)
    assert not conn.lookupByName("audit-off").isActive()  # stays off
    conn.close()


@pytest.mark.parametrize("argv, named", [
    (["audit"], "--all"),
    (["audit", "--all", "web1"], "--all"),
    (["audit", "--all", "--connect", "not a uri"], "--connect 'not a uri'"),
    (["audit", "bad/name", "--connect", TEST_URI], "DOMAIN 'bad/name'"),
    (["audit", "nosuch", "--connect", TEST_URI], "DOMAIN 'nosuch'"),
    (["audit", "--all", "--connect", TEST_URI, "--json", "/nonexistent/dir/a.json"], "--json /nonexistent"),
    (["audit", "--all", "--connect", TEST_URI, "--prometheus", "/proc/wdimage.prom"], "--prometheus /proc"),
    (["audit", "--all", "--connect", TEST_URI, "--jobs", "0"], "--jobs"),
])
def test_bad_input_exits_2_naming_it(argv, named, capsys):
    assert cli.main(argv) == ExitCode.USAGE
    assert named in capsys.readouterr().err


def test_a_file_of_the_users_is_not_overwritten(tmp_path, capsys):
    mine = tmp_path / "notes.json"
    mine.write_text('{"mine": true}')
    assert cli.main(["audit", "--all", "--connect", TEST_URI, "--json", str(mine)]) == ExitCode.USAGE
    assert "will not overwrite" in capsys.readouterr().err and json.loads(mine.read_text()) == {"mine": True}


# --- the page (audit --html) ------------------------------------------------------------------------------------

class _Page(html.parser.HTMLParser):
    """The rows of the page's fleet tables, and every URL the page would fetch."""

    def __init__(self):
        super().__init__()
        self.rows, self.fetches, self.cell, self.generator = [], [], None, ""

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr" and "data-verdict" in attrs:
            self.rows.append({"class": attrs["class"], "domain": attrs["data-domain"],
                              "verdict": attrs["data-verdict"], "cells": []})
        if tag == "td" and self.rows:
            self.cell = []
        self.fetches += [attrs[a] for a in ("src", "href") if a in attrs]
        if tag == "meta" and attrs.get("name") == "generator":
            self.generator = attrs["content"]

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)

    def handle_endtag(self, tag):
        if tag == "td" and self.cell is not None and self.rows:
            self.rows[-1]["cells"].append(" ".join("".join(self.cell).split()))
            self.cell = None


def test_the_page_has_a_row_per_domain_with_its_verdicts_colour_and_fix(tmp_path):
    data = outputs.report_json(sample_report())
    page = _Page()
    page.feed(pages.render_html(data))
    rows = {r["domain"]: r for r in page.rows}
    assert set(rows) == {"web1", "db1", "q35", "off1", ""}  # "" is the unreachable host's error row
    assert [r["verdict"] for r in page.rows] == ["not-armed", "cannot-fire", "unknown", "armed",  # the worst first
                                                 "error"]  # the second host's table
    assert (rows["web1"]["class"], rows["db1"]["class"], rows["off1"]["class"]) == ("pass", "fail", "skip")
    assert rows["web1"]["cells"][-1] == ""  # armed: no fix
    assert "line 23" in rows["db1"]["cells"][-1] and rows["db1"]["cells"][-1].startswith("fix:")
    assert page.fetches == [] and page.generator.endswith("audit report")
    for d in data["domains"]:
        assert d["reason"].split()[0] in " ".join(rows[d["domain"] or ""]["cells"])


def test_the_page_escapes_what_the_fleet_names():
    data = outputs.report_json(sample_report())
    data["domains"][0]["domain"] = "<script>alert(1)</script>"
    data["domains"][0]["reason"] = "a & b <b>"
    text = pages.render_html(data)
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "a &amp; b &lt;b&gt;" in text


def test_audit_html_will_not_replace_a_foreign_file(tmp_path, capsys):
    foreign = tmp_path / "fleet.html"
    foreign.write_text("<!DOCTYPE html><title>mine</title>")
    assert cli.main(["audit", "--all", "--connect", TEST_URI, "--html", str(foreign)]) == ExitCode.USAGE
    assert f"--html {foreign}" in capsys.readouterr().err
    assert foreign.read_text() == "<!DOCTYPE html><title>mine</title>"  # nothing the user had is lost
