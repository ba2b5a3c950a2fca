"""Kernel configuration: kconfiglib made to parse current kernels, the fragments, --merge/--check."""
