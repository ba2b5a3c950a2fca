"""wdimage: make QEMU/KVM guests watchdog-ready, end to end."""

__version__ = "0.1.0"
