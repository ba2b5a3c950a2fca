"""wdimage audit: a read-only report of libvirt domains' watchdog readiness across hosts."""
