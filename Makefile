# wdimage: `make demo` and `make test` install what they need on a fresh Debian 12 machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Debian packages, one line per concern.
APT_BASE := python3-venv make gcc git ca-certificates
APT_KERNEL := flex bison bc libc6-dev binutils debian-archive-keyring linux-source-6.1 linux-config-6.1 xz-utils
# wdimage build --kernel source: the kernel's build and its bindeb-pkg packaging (ccache where installed).
APT_KERNEL_BUILD := libelf-dev libssl-dev ccache rsync cpio kmod dpkg-dev fakeroot perl openssl
APT_BUILD := sudo debootstrap debian-archive-keyring qemu-utils e2fsprogs fdisk squashfs-tools kpartx dmsetup curl shellcheck
APT_DRILL := qemu-system-x86 qemu-utils libxml2-utils
APT_TEST := strace zstd
# The real tests' browser: Debian's headless Chromium opens the drill's HTML report (tests/browser.py). Playwright
# drives this binary over a pipe (its own browser download is not used; chromedriver is not needed).
APT_BROWSER := chromium
# Platforms: `cloud-init schema` checks wdimage's user-data in the tests (cloud-init is installed for its checker
# only: this host does not run it), cloud-localds makes the NoCloud seed the real cloud-init test boots with,
# umoci + skopeo build and inspect `wdimage build --containerdisk`'s KubeVirt containerDisk.
APT_PLATFORMS := cloud-init cloud-image-utils umoci skopeo
# libvirt: the daemons the real tests start (tests/libvirtd.py), virsh and virt-xml-validate, ss (iproute2), and
# what pip needs to build libvirt-python (no wheels on PyPI) for the venv's own python.
APT_LIBVIRT := libvirt-daemon-system libvirt-clients libvirt-daemon-driver-qemu libvirt-dev pkg-config iproute2
# Foreign guests (--arch arm64|s390x): qemu-user-static runs their chroot in DIB, the system emulators boot them,
# UEFI for an arm64 disk image, and Debian's cross compilers for Kconfig's compiler tests (kernel-config --arch).
APT_ARCH := qemu-user-static qemu-system-arm qemu-system-misc qemu-efi-aarch64 gcc-aarch64-linux-gnu gcc-s390x-linux-gnu
# wdimage audit's real test of a second host: libvirt's qemu+ssh transport to a throwaway sshd on 127.0.0.1
# (tests/sshd.py runs /usr/sbin/sshd itself; nc -U is libvirt's proxy to the private libvirtd's socket). Note: on a
# machine with systemd, installing openssh-server also enables and starts the system's own sshd.
APT_AUDIT := openssh-server netcat-openbsd
APT_PACKAGES := $(sort $(APT_BASE) $(APT_KERNEL) $(APT_KERNEL_BUILD) $(APT_BUILD) $(APT_DRILL) $(APT_LIBVIRT) $(APT_TEST) $(APT_BROWSER) $(APT_PLATFORMS) $(APT_ARCH) $(APT_AUDIT))
# `make demo` needs only a build and a drill: no kernel sources, no libvirt (a fresh machine's minutes).
APT_DEMO := $(sort $(APT_BASE) $(APT_BUILD) $(APT_DRILL))

.PHONY: all deps deps-demo venv venv-demo binfmt test test-arm64 test-s390x test-fast demo bench lint clean

all: test

# Install the Debian packages of $(1) that are missing (apt-get update only when something is).
define apt_install
	@missing=$$(for p in $(1); do \
	    dpkg-query -W -f='$${Status}\n' "$$p" 2>/dev/null | grep -q '^install ok installed' || echo "$$p"; done); \
	if [ -n "$$missing" ]; then \
	    echo "Installing Debian packages:" $$missing; \
	    $(SUDO) apt-get update -q && \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi
endef

deps:
	$(call apt_install,$(APT_PACKAGES))

deps-demo:
	$(call apt_install,$(APT_DEMO))

venv: deps $(BIN)/.installed

# Let the kernel hand arm64 and s390x programs to qemu-user-static (a foreign build's chroot): mount binfmt_misc
# and register Debian's qemu-user-static entries where no binfmt-support or systemd-binfmt did. Machine-wide.
binfmt: deps
	@mountpoint -q /proc/sys/fs/binfmt_misc || $(SUDO) mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
	@for a in aarch64 s390x; do [ -e /proc/sys/fs/binfmt_misc/qemu-$$a ] || \
	    $(SUDO) sh -c "cat /usr/lib/binfmt.d/qemu-$$a.conf > /proc/sys/fs/binfmt_misc/register"; done

# The [libvirt] extra builds libvirt-python from source: it needs `make deps` (libvirt-dev, pkg-config) first.
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[test,libvirt]'
	touch $@ $(BIN)/.installed-run

# What `wdimage build` and `drill` need, without the test and libvirt extras (`make venv` includes it).
venv-demo: deps-demo $(BIN)/.installed-run

$(BIN)/.installed-run: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e .
	touch $@

# Every test: the unit tier and the real-input tier (kernel trees, DIB builds, QEMU boots). First every image the
# real tests boot, one DIB run at a time with the suite's kernel compiling beside them (tests/prebuild.py: cached
# by content, so a warm run only checks sums); then
# the tests on both cores, a whole file per worker, the longest first (tests/conftest.py); last, on its own, the
# test that boots a fleet of guests at once (marker `alone`). Both pytest runs always run; either failing fails.
test: deps venv binfmt
	$(BIN)/python -m tests.prebuild
	$(BIN)/python -m pytest -v --durations=40 -n 2 --dist loadfile --no-loadscope-reorder \
	    -m 'not s390x and not arm64 and not alone'; two=$$?; \
	$(BIN)/python -m pytest -v --durations=10 -m 'alone and not s390x and not arm64'; alone=$$?; \
	test $$two -eq 0 -a $$alone -eq 0

# The arm64 guest (built through qemu-user-static, drilled under TCG): outside make test's 45-minute budget.
test-arm64: deps venv binfmt
	$(BIN)/python -m pytest -v --durations=10 -m arm64

# The s390x guest (built through qemu-user-static, drilled under TCG): timed in docs/architectures.md.
test-s390x: deps venv binfmt
	$(BIN)/python -m pytest -v --durations=10 -m s390x

# The fast tier alone, for quick iteration.
test-fast: venv
	$(BIN)/python -m pytest -n 2 -m 'not real'

# Build the default image (Debian, i6300esb, reset after 15 s) and drill its headline: the seed's panic
# (DEMO_FAULTS; `make demo DEMO_FAULTS='panic kill hang'` adds a killed and a hung daemon, about 50 s each), and
# write the HTML report. The controls (healthy, stop, pause, migrate) run in `wdimage drill`'s default (all) and in
# `make test`.
DEMO_FAULTS ?= panic
demo: deps-demo venv-demo
	$(BIN)/wdimage build debian --output output/debian-i6300esb
	$(BIN)/wdimage drill output/debian-i6300esb $(foreach f,$(DEMO_FAULTS),--fault $(f)) --html output/drill.html

# kernel-config on a real tree: Debian's linux-source-6.1 with its amd64 config (watchdog switched off):
# --check (fails), --merge, then --check --strict (passes). The tree is extracted once into the cache.
.PHONY: demo-kernel-config
demo-kernel-config: deps venv
	$(BIN)/python -m tests.kernel_trees demo

bench: deps venv
	for b in bench/bench_*.py; do $(BIN)/python "$$b" || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
