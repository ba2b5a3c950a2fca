"""The DIB command object: its copy-pasteable text, its process environment, and the layout detection."""

import shlex
from pathlib import Path

from wdimage.image import dib


def _command(**kw) -> dib.DibCommand:
    base = dict(env=(("DIB_RELEASE", "bookworm"), ("DIB_WATCHDOG_BLACKLIST", "iTCO_wdt ib700wdt")),
                elements=("debian-minimal", "baremetal", "watchdog"), output=Path("/o/debian-i6300esb"))
    return dib.DibCommand(**{**base, **kw})


def test_str_is_a_copy_pasteable_line():
    text = str(_command())
    assert text == ("DIB_RELEASE=bookworm DIB_WATCHDOG_BLACKLIST='iTCO_wdt ib700wdt' "
                    "disk-image-create --qemu-img-options compression_type=zstd "
                    "-o /o/debian-i6300esb -t qcow2 debian-minimal baremetal watchdog")
    words = shlex.split(text)
    assert words[1] == "DIB_WATCHDOG_BLACKLIST=iTCO_wdt ib700wdt" and words[2] == "disk-image-create"
    assert "--qemu-img-options" not in _command(image_type="raw").argv()
    assert _command(skip_base=True).argv()[1] == "-n"


def test_logfile_goes_on_the_command_line():
    assert _command(logfile=Path("/l/x.log")).argv()[:3] == ["disk-image-create", "--logfile", "/l/x.log"]


def test_environment_puts_dib_on_path_and_ours_on_top(monkeypatch):
    monkeypatch.setenv("DIB_RELEASE", "sid")
    env = _command().environment()
    assert env["DIB_RELEASE"] == "bookworm"
    assert (Path(env["PATH"].split(":")[0]) / "disk-image-create").exists()


def test_device_mapper_detection(tmp_path):
    assert dib.device_mapper_works(tmp_path / "no-such-control") is False


def test_layout_elements():
    assert dib.layout_elements(dib.Layout.DIRECT) == ("baremetal",)
    assert dib.layout_elements(dib.Layout.DISK) == ("vm",)


def test_partitionless_block_device_config_is_one_filesystem_on_the_loop_device():
    import yaml  # DIB's own dependency
    config = yaml.safe_load(dib.PARTITIONLESS_BLOCK_DEVICE.format(size="3GiB"))
    assert [next(iter(item)) for item in config] == ["local_loop", "mkfs"]
    mkfs = config[1]["mkfs"]
    assert mkfs["base"] == "image0" and mkfs["label"] == dib.ROOT_LABEL and mkfs["mount"]["mount_point"] == "/"


def test_image_cache_is_used_by_one_dib_run_at_a_time(tmp_path):
    import subprocess
    import sys
    import time
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from wdimage.image import dib\n"
        "with dib.exclusive_image_cache(Path(sys.argv[1])):\n"
        "    print('held', flush=True); time.sleep(1.5)\n"), str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    start = time.monotonic()
    with dib.exclusive_image_cache(tmp_path):
        waited = time.monotonic() - start
    holder.wait()
    assert waited > 0.5


def test_image_cache_dir_follows_dib_image_cache():
    assert dib.image_cache_dir({"DIB_IMAGE_CACHE": "/c"}) == Path("/c")
    assert dib.image_cache_dir({"HOME": "/h"}) == Path("/h/.cache/image-create")
