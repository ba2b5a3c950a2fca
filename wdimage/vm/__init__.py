"""The VM layer: QEMU's launch line and process, QMP, the guest agent, libvirt; one Guest interface."""
