"""The drill: readiness checks, scenarios, the runner, reports; on QEMU guests and libvirt domains."""
