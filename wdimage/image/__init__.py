"""The image build: settings, distributions, diskimage-builder, the kernel, rendered files, outputs."""
