"""The drill's guest session: boot a guest from the target, wait until the watchdog is armed (the readiness
checks of wdimage.drill.checks passing), and keep an armed guest for the next scenario."""

import time
from collections.abc import Sequence

from wdimage import log
from wdimage.drill.checks import Probe, run_checks
from wdimage.drill.scenarios import Setup
from wdimage.vm.guest import Guest, Target

AGENT_TIMEOUT = 240  # seconds from QEMU start (or a reset) to an answering guest agent; TCG on a busy host
BOOT_SETTLE_TIMEOUT = 120  # seconds for systemd to finish starting units once the agent answers
CHECK_RETRY_SECONDS = 10  # how long failing checks are retried (a daemon still starting) before they count
CHECK_RETRY_WITHOUT_SYSTEMD = 60  # OpenRC has no "boot finished" to wait for: poll the checks longer


def wall(monotonic: float) -> float:
    """A time.monotonic() as the time.time() it was."""
    return time.time() - (time.monotonic() - monotonic)


def _first_armer(probe: Probe) -> str:
    """Who armed the device first in this boot: the image's early keepalive (the initramfs, wdimage-keepalive)
    as its stamp says, else the daemon that holds it."""
    return (probe.boot.armed_by if probe.boot and probe.boot.armed_by else "") or "the watchdog daemon"


class Session:
    """The current guest and its last readiness probe; a guest that is still armed serves the next scenario."""

    def __init__(self, target: Target, setup: Setup):
        self.target = target
        self.setup = setup
        self.guest: Guest | None = None
        self.probe: Probe | None = None
        # The current guest's boot (or reset) and the moment it was armed, on the wall clock (time.time()), and
        # who armed it first (the report's timelines).
        self.booted: float | None = None
        self.armed: float | None = None
        self.armed_by = ""

    def boot(self) -> Guest:
        self.close()
        self.guest = self.target.boot()
        return self.guest

    def wait_armed(self, since: float, prepare: Sequence[str] = ()) -> tuple[Probe, float, float]:
        """Once the guest agent answers and the boot settled: (probe, seconds to agent, seconds to armed), the
        seconds counted from `since` (a time.monotonic()). Failing checks are retried a little (a daemon still
        starting), then count as failed. Records the boot and arming moments for the report's timelines."""
        guest = self.guest
        self.booted, self.armed, self.armed_by = wall(since), None, ""
        with log.waiting("the guest to boot and its agent to answer", at_most=AGENT_TIMEOUT):
            guest.wait_agent(AGENT_TIMEOUT)
        to_agent = time.monotonic() - since
        log.info(f"guest agent answered after {to_agent:.1f}s")
        retry = CHECK_RETRY_SECONDS
        try:  # systemd: wait for the start jobs
            with log.waiting("the guest's boot to settle (systemctl is-system-running --wait)",
                             at_most=BOOT_SETTLE_TIMEOUT):
                settle = guest.run("if [ -d /run/systemd/system ]; then systemctl is-system-running --wait; "
                                   "else echo no-systemd; fi", timeout=BOOT_SETTLE_TIMEOUT)
            if settle.stdout.strip() == "no-systemd":
                retry = CHECK_RETRY_WITHOUT_SYSTEMD  # OpenRC: nothing to wait on; the checks are polled
        except TimeoutError:
            guest.wait_agent(30)  # a timed-out command leaves the channel to resynchronise
            jobs = guest.run("systemctl list-jobs --no-pager --no-legend 2>&1 | head -n 12", timeout=30)
            queued = [" ".join(line.split()) for line in jobs.stdout.splitlines() if line.strip()]
            log.info(f"the guest's boot did not settle within {BOOT_SETTLE_TIMEOUT}s; checking anyway "
                     f"(start jobs still queued: {'; '.join(queued) or 'none'})")
            retry = CHECK_RETRY_WITHOUT_SYSTEMD  # start jobs still queued (the daemon after the network): poll
        for command in prepare:
            result = guest.run(command, timeout=60)
            output = (result.stdout + result.stderr).strip()
            log.info(f"guest$ {command} -> exit {result.exitcode}{': ' + output if output else ''}")
        probe = self.poll_checks(retry)
        # Armed when the daemon holding the device started (guest clocks), not when we happened to look.
        armed = probe.daemon_started if probe.daemon_started is not None else time.monotonic()
        if probe.armed:
            self.armed = wall(max(armed, since))
            self.armed_by = _first_armer(probe)
        return probe, to_agent, max(armed - since, 0.0)

    def poll_checks(self, seconds: float) -> Probe:
        """The readiness checks, retried every second for up to `seconds` until armed (a daemon still
        starting); the last probe is the session's."""
        deadline = time.monotonic() + seconds
        while True:
            probe = run_checks(self.guest, self.setup.model, self.setup.timeout)
            if probe.armed or time.monotonic() > deadline:
                self.probe = probe
                return probe
            time.sleep(1)

    def ensure_armed(self) -> str | None:
        """A guest that is up and armed for the next scenario (booting one if needed); None, or what failed."""
        if self.guest is not None and self.probe is not None and self.probe.armed and self.guest.status() == "running":
            return None
        guest = self.boot()
        probe, _, _ = self.wait_armed(guest.started_at)
        return None if probe.armed else ", ".join(c.title for c in probe.checks if not c.passed)

    def close(self) -> None:
        if self.guest is not None:
            self.guest.close()
        self.guest, self.probe = None, None
