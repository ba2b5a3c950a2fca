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
APT_TEST := strace
# libvirt: the daemons the real tests start (tests/libvirtd.py), virsh and virt-xml-validate, ss (iproute2), and
# what pip needs to build libvirt-python (no wheels on PyPI) for the venv's own python.
APT_LIBVIRT := libvirt-daemon-system libvirt-clients libvirt-daemon-driver-qemu libvirt-dev pkg-config iproute2
# wdimage audit's real test of a second host: libvirt's qemu+ssh transport to a throwaway sshd on 127.0.0.1
# (tests/sshd.py runs /usr/sbin/sshd itself; nc -U is libvirt's proxy to the private libvirtd's socket). Note: on a
# machine with systemd, installing openssh-server also enables and starts the system's own sshd.
APT_AUDIT := openssh-server netcat-openbsd
APT_PACKAGES := $(sort $(APT_BASE) $(APT_KERNEL) $(APT_KERNEL_BUILD) $(APT_BUILD) $(APT_DRILL) $(APT_LIBVIRT) $(APT_TEST) $(APT_AUDIT))

.PHONY: all deps venv test test-fast demo bench lint clean

all: test

# Install the Debian packages that are missing (apt-get update only when something is).
deps:
	@missing=$$(for p in $(APT_PACKAGES); do \
	    dpkg-query -W -f='$${Status}\n' "$$p" 2>/dev/null | grep -q '^install ok installed' || echo "$$p"; done); \
	if [ -n "$$missing" ]; then \
	    echo "Installing Debian packages:" $$missing; \
	    $(SUDO) apt-get update -q && \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

venv: deps $(BIN)/.installed

# The [libvirt] extra builds libvirt-python from source: it needs `make deps` (libvirt-dev, pkg-config) first.
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[test,libvirt]'
	touch $@

# Every test: fast unit tests, then the real-input tier (kernel trees, DIB build, QEMU boots).
test: deps venv
	$(BIN)/python -m pytest -v --durations=40

# The fast tier alone, for quick iteration.
test-fast: venv
	$(BIN)/python -m pytest -m 'not real'

# Build the default image (Debian, i6300esb, reset after 15 s) and drill it: panic, kill and hang.
demo: deps venv
	$(BIN)/wdimage build debian --output output/debian-i6300esb
	$(BIN)/wdimage drill output/debian-i6300esb

# kernel-config on a real tree: Debian's linux-source-6.1 with its amd64 config (watchdog switched off):
# --check (fails), --merge, then --check --strict (passes). The tree is extracted once into the cache.
.PHONY: demo-kernel-config
demo-kernel-config: deps venv
	$(BIN)/python -m tests.kernel_trees demo

bench: deps venv
	for b in bench/bench_*.py; do $(BIN)/python "$$b" || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
