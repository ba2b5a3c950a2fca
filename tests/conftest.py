"""How `make test` spreads the suite over both cores (pytest-xdist, `-n 2 --dist loadfile --no-loadscope-reorder`:
without that option xdist would hand out the files with the most tests first).

Each test file runs whole on one worker, so a module's shared guest boots once. The files that take longest
start first, so that neither worker is left with a long real test at the end while the other idles; the unit
tests fill the gaps. The figures are seconds measured for each file in a run of two workers side by side on
2 cores (call + setup, images cached); only their order matters, and a file missing here starts with the unit
tests. Run alone (no -n), the suite keeps its collection order. The audit's fleet (marker `alone`) is not here:
it boots eight guests at once, and `make test` runs it on its own afterwards.
"""

import pytest

SECONDS = {
    "tests/real/test_drill.py": 930,
    "tests/real/test_health_drill.py": 710,
    "tests/real/test_safe_proof.py": 600,
    "tests/real/test_trust.py": 530,
    "tests/real/test_libvirt.py": 250,
    "tests/real/test_kernel_source.py": 240,
    "tests/real/test_cloud_init_standin.py": 225,
    "tests/real/test_openrc_debian.py": 225,
    "tests/real/test_dracut_debian.py": 155,
    "tests/real/test_kernel_trees.py": 60,
    "tests/real/test_kernel_arch.py": 60,
}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    if not hasattr(config, "workerinput"):  # not an xdist worker: keep the order as collected
        return
    items.sort(key=lambda item: -SECONDS.get(item.nodeid.split("::", 1)[0], 0))  # stable: a file stays in order
