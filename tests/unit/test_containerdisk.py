"""`wdimage build --containerdisk`: a real OCI archive made by umoci and skopeo from small stand-in files,
checked with `skopeo inspect` and by reading its layer: the disk under /disk/, KubeVirt's 107:107, 0440."""

import gzip
import io
import json
import os
import shutil
import subprocess
import tarfile

import pytest

from wdimage.image import containerdisk

pytestmark = pytest.mark.skipif(not (shutil.which("umoci") and shutil.which("skopeo")),
                                reason="umoci and skopeo are not installed (make deps: APT_PLATFORMS)")


def _layer_members(archive) -> dict[str, tarfile.TarInfo | bytes]:
    """Path -> (TarInfo, content) of the image's one layer, read through the archive's OCI index."""
    with tarfile.open(archive) as outer:
        def blob(digest: str) -> bytes:
            return outer.extractfile(f"blobs/sha256/{digest.split(':', 1)[1]}").read()

        index = json.loads(outer.extractfile("index.json").read())
        manifest = json.loads(blob(index["manifests"][0]["digest"]))
        assert len(manifest["layers"]) == 1
        layer = tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob(manifest["layers"][0]["digest"]))))
        return {m.name.lstrip("./"): (m, layer.extractfile(m).read() if m.isfile() else b"") for m in layer}


def test_containerdisk_is_an_oci_archive_with_the_disk_under_disk(tmp_path):
    staging = tmp_path / "staging"
    staging.mkdir()
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(staging / "x.qcow2"), "64M"], check=True)
    (staging / "x.vmlinuz").write_bytes(b"kernel" * 10)
    (staging / "x.initrd").write_bytes(b"initrd" * 10)
    file = containerdisk.write(staging, "x", "x.qcow2", ("x.vmlinuz", "x.initrd"))
    assert file == "x.containerdisk.tar"
    assert sorted(p.name for p in staging.iterdir()) == ["x.containerdisk.tar", "x.initrd", "x.qcow2", "x.vmlinuz"]
    inspect = subprocess.run(["skopeo", "inspect", f"oci-archive:{staging / file}"], capture_output=True, text=True)
    assert inspect.returncode == 0, inspect.stderr
    facts = json.loads(inspect.stdout)
    assert facts["Os"] == "linux" and facts["Architecture"] == "amd64" and len(facts["Layers"]) == 1
    assert facts["Labels"]["io.kubevirt.containerdisk"] == "x.qcow2"
    members = _layer_members(staging / file)
    disk, content = members["disk/x.qcow2"]
    assert content == (staging / "x.qcow2").read_bytes()
    assert oct(disk.mode & 0o777) == "0o440"
    if os.geteuid() == 0:
        assert (disk.uid, disk.gid) == (containerdisk.QEMU_UID, containerdisk.QEMU_UID)
    assert members["boot/x.vmlinuz"][1] == b"kernel" * 10 and "boot/x.initrd" in members
    assert not [m for m in members if m.startswith(("etc", "usr"))]  # nothing but the disk and boot files


def test_a_failing_tool_leaves_nothing_behind(tmp_path):
    staging = tmp_path / "staging"
    staging.mkdir()
    with pytest.raises(Exception, match="x.qcow2|No such file"):
        containerdisk.write(staging, "x", "x.qcow2")  # no image to pack
    assert list(staging.iterdir()) == []
