"""The KubeVirt and Proxmox VE files: validated against KubeVirt's published OpenAPI schema and qm.conf(5)'s
watchdog grammar (upstream fixtures that name their source), the platform columns of the model and action rows
held to those upstream files, the files a platform cannot express left out with the reason."""

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from wdimage.image import platforms, render
from wdimage.image.manifest import FILE, Files, Manifest, read_manifest
from wdimage.models import ACTIONS, MODELS, Action, Cannot, Model, platform_words

UPSTREAM = Path(__file__).resolve().parent.parent / "fixtures" / "upstream"
SWAGGER = UPSTREAM / "kubevirt" / "v1.9.0-virtualmachine.swagger.json"
PVE_FORMAT = UPSTREAM / "proxmox" / "watchdog_fmt.pm"


def _guest(**kw) -> render.GuestFiles:
    base = dict(name="debian-i6300esb", model=Model.I6300ESB, action=Action.RESET, image="debian-i6300esb.qcow2",
                kernel="debian-i6300esb.vmlinuz", initrd="debian-i6300esb.initrd",
                cmdline="root=LABEL=cloudimg-rootfs ro console=ttyS0", agent=True)
    return render.GuestFiles(**{**base, **kw})


# --- KubeVirt ---------------------------------------------------------------------------------------------------

def _strict_validator() -> jsonschema.Draft4Validator:
    """KubeVirt's schema (Swagger 2.0 definitions, JSON Schema draft 4), every object definition closed."""
    swagger = json.loads(SWAGGER.read_text())
    definitions = {}
    for name, schema in swagger["definitions"].items():
        if "properties" in schema and "additionalProperties" not in schema:
            schema = {**schema, "additionalProperties": False}
        definitions[name] = schema
    return jsonschema.Draft4Validator({"$ref": "#/definitions/v1.VirtualMachine", "definitions": definitions})


VALIDATOR = _strict_validator()


def _kubevirt(tmp_path: Path, guest: render.GuestFiles) -> dict:
    results = platforms.write_platform_files(guest, tmp_path)
    _, outcome = results["kubevirt"]
    assert outcome.file, outcome.left_out
    return yaml.safe_load((tmp_path / outcome.file).read_text())


def _errors(document: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in VALIDATOR.iter_errors(document)]


@pytest.mark.parametrize("action", [a for a in Action if not isinstance(ACTIONS[a].kubevirt, Cannot)])
@pytest.mark.parametrize("direct", [True, False])
def test_kubevirt_manifest_is_valid_against_kubevirts_schema(tmp_path, action, direct):
    guest = _guest(action=action) if direct else _guest(action=action, kernel=None, initrd=None, cmdline=None)
    document = _kubevirt(tmp_path, guest)
    assert _errors(document) == []
    assert document["apiVersion"] == "kubevirt.io/v1" and document["kind"] == "VirtualMachine"
    spec = document["spec"]["template"]["spec"]
    assert spec["domain"]["devices"]["watchdog"] == {"name": "watchdog", "i6300esb": {"action": str(action)}}
    assert spec["domain"]["memory"]["guest"] == "1024Mi" and spec["domain"]["cpu"]["cores"] == 2
    assert ("firmware" in spec["domain"]) is direct
    if direct:
        boot = spec["domain"]["firmware"]["kernelBoot"]
        assert boot["container"]["kernelPath"] == "/boot/debian-i6300esb.vmlinuz"
        assert boot["container"]["initrdPath"] == "/boot/debian-i6300esb.initrd"
        assert boot["kernelArgs"] == "root=LABEL=cloudimg-rootfs ro console=ttyS0"


def test_the_strict_schema_rejects_what_kubevirt_would_not_take(tmp_path):
    """The validator bites: a model KubeVirt lacks, a misspelt key, a string where a number goes."""
    document = _kubevirt(tmp_path, _guest())
    watchdog = document["spec"]["template"]["spec"]["domain"]["devices"]["watchdog"]
    watchdog["ib700"] = watchdog.pop("i6300esb")
    document["spec"]["template"]["spec"]["domain"]["cpu"]["corez"] = 2
    document["spec"]["template"]["spec"]["domain"]["cpu"]["sockets"] = "1"
    errors = _errors(document)
    assert len(errors) == 3, errors
    assert any("'ib700' was unexpected" in e for e in errors) and any("'corez'" in e for e in errors)
    del document["spec"]
    assert any("'spec' is a required property" in e for e in _errors(document))


def test_kubevirt_columns_are_what_kubevirts_schema_offers():
    definitions = json.loads(SWAGGER.read_text())["definitions"]
    devices = set(definitions["v1.Watchdog"]["properties"]) - {"name"}
    assert devices == {"i6300esb", "diag288"}
    assert {m.kubevirt for m in MODELS.values() if not isinstance(m.kubevirt, Cannot)} == devices  # x86, s390x
    described = definitions["v1.I6300ESBWatchdog"]["properties"]["action"]["description"]
    offered = set(re.search(r"Valid values are ([a-z, ]+)\.", described).group(1).replace(",", " ").split())
    assert {a.kubevirt for a in ACTIONS.values() if not isinstance(a.kubevirt, Cannot)} == offered


def test_kubevirt_names_are_kubernetes_names():
    assert platforms.k8s_name("Debian_i6300esb.v2") == "debian-i6300esb-v2"
    assert isinstance(platforms.k8s_name("_debian"), Cannot)
    with pytest.raises(ValueError):
        render.render_kubevirt(_guest(), ("i6300esb", "reset"), 'x"\n  evil: 1', "registry.invalid/a:b", "f", "n")
    with pytest.raises(ValueError):
        render.render_kubevirt(_guest(), ("i6300esb", "reset"), "x", "registry.invalid/a:b\nevil", "f", "n")


def test_a_name_kubernetes_cannot_take_leaves_the_file_out(tmp_path):
    results = platforms.write_platform_files(_guest(name="_debian"), tmp_path)
    assert "Kubernetes object name" in results["kubevirt"][1].left_out
    assert not list(tmp_path.glob("*.kubevirt.yaml"))


# --- Proxmox VE -------------------------------------------------------------------------------------------------

def _pve_enums() -> dict[str, list[str]]:
    """qm.conf(5)'s watchdog keys and their enums, read from Proxmox's own format definition."""
    text = PVE_FORMAT.read_text()
    return {key: body.split() for key, body in re.findall(r"(\w+) => \{[^}]*?enum => \[qw\(([^)]*)\)\]", text)}


def _default_key() -> str:
    return re.search(r"(\w+) => \{\s*default_key => 1", PVE_FORMAT.read_text()).group(1)


def parse_pve_watchdog(value: str) -> dict[str, str]:
    """A `watchdog` property string as PVE::JSONSchema::parse_property_string reads it: comma-separated
    key=value, the default key also bare, each key once, each value in its enum; anything else raises."""
    enums, parsed = _pve_enums(), {}
    for part in value.split(","):
        key, sep, word = part.partition("=")
        if not sep:
            key, word = _default_key(), part
        if key not in enums or key in parsed or word not in enums[key]:
            raise ValueError(f"{part!r} is not in qm.conf's watchdog grammar")
        parsed[key] = word
    return parsed


def test_the_pve_grammar_parser_bites():
    assert parse_pve_watchdog("ib700") == {"model": "ib700"}
    for bad in ("model=itco", "action=inject-nmi", "model=ib700,model=ib700", "timeout=15", "model=ib700,"):
        with pytest.raises(ValueError):
            parse_pve_watchdog(bad)


def test_proxmox_columns_are_qm_confs_enums():
    enums = _pve_enums()
    assert sorted(m.proxmox for m in MODELS.values() if not isinstance(m.proxmox, Cannot)) == sorted(enums["model"])
    assert sorted(a.proxmox for a in ACTIONS.values() if not isinstance(a.proxmox, Cannot)) == sorted(enums["action"])


def _run_proxmox(tmp_path: Path, guest: render.GuestFiles, *args: str) -> tuple[subprocess.CompletedProcess, list]:
    """Run the script with a fake `qm` that records its arguments (and answers `qm config` as PVE does)."""
    out = tmp_path / "out"
    out.mkdir()
    results = platforms.write_platform_files(guest, out)
    script = out / results["proxmox"][1].file
    fake = tmp_path / "bin"
    fake.mkdir()
    log = tmp_path / "qm.log"
    (fake / "qm").write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {log}\nfor a in "$@"; do printf "[%s]" "$a" >> {log}; '
                             f'done; echo >> {log}\n[ "$1" = config ] && echo "unused0: local:$2/vm-$2-disk-0.qcow2"\n'
                             'exit 0\n')
    (fake / "qm").chmod(0o755)
    proc = subprocess.run([str(script), *args], env={**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"},
                          capture_output=True, text=True)
    calls = [line for line in log.read_text().splitlines() if line.startswith("[")] if log.exists() else []
    return proc, [re.findall(r"\[([^]]*)\]", line) for line in calls]


@pytest.mark.parametrize("model", [m for m in Model if not isinstance(MODELS[m].proxmox, Cannot)])
@pytest.mark.parametrize("action", [a for a in Action if not isinstance(ACTIONS[a].proxmox, Cannot)])
def test_proxmox_watchdog_value_parses_by_qm_confs_grammar(tmp_path, model, action):
    platforms.write_platform_files(_guest(model=model, action=action), tmp_path)
    text = (tmp_path / "debian-i6300esb.proxmox.sh").read_text()
    value = shlex.split(re.search(r"--watchdog (.*)\n", text).group(1))[0]
    assert parse_pve_watchdog(value) == {"model": str(model), "action": str(action)}
    assert f"#   watchdog: {value}\n" in text


def test_proxmox_script_runs_create_importdisk_set(tmp_path):
    proc, calls = _run_proxmox(tmp_path, _guest(), "104", "local-lvm")
    assert proc.returncode == 0, proc.stderr
    here = str(tmp_path / "out")
    assert [c[0] for c in calls] == ["create", "importdisk", "config", "set", "set"]
    create = calls[0]
    assert create[create.index("--watchdog") + 1] == "model=i6300esb,action=reset"
    assert create[create.index("--net0") + 1] == "virtio,bridge=vmbr0" and "--agent" in create
    assert calls[1] == ["importdisk", "104", f"{here}/debian-i6300esb.qcow2", "local-lvm"]
    assert calls[3] == ["set", "104", "--virtio0", "local:104/vm-104-disk-0.qcow2", "--boot", "order=virtio0"]
    args = shlex.split(calls[4][calls[4].index("--args") + 1])  # PVE splits `args` as a shell would
    assert args == ["-kernel", f"{here}/debian-i6300esb.vmlinuz", "-initrd", f"{here}/debian-i6300esb.initrd",
                    "-append", "root=LABEL=cloudimg-rootfs ro console=ttyS0"]


def test_proxmox_script_refuses_bad_arguments(tmp_path):
    proc, calls = _run_proxmox(tmp_path, _guest(), "10a", "local")
    assert proc.returncode == 2 and "VMID" in proc.stderr and calls == []


def test_proxmox_script_passes_shellcheck(tmp_path):
    platforms.write_platform_files(_guest(), tmp_path)
    proc = subprocess.run(["shellcheck", "-s", "sh", str(tmp_path / "debian-i6300esb.proxmox.sh")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


# --- what cannot be expressed -----------------------------------------------------------------------------------

@pytest.mark.parametrize("model,action,kubevirt,proxmox", [
    (Model.ITCO, Action.RESET, False, False),
    (Model.IB700, Action.RESET, False, True),
    (Model.I6300ESB, Action.PAUSE, False, True),
    (Model.I6300ESB, Action.INJECT_NMI, False, False),
    (Model.I6300ESB, Action.DEBUG, False, True),
])
def test_what_a_platform_cannot_express_is_left_out_with_the_reason(tmp_path, model, action, kubevirt, proxmox):
    results = platforms.write_platform_files(_guest(model=model, action=action), tmp_path)
    for name, expected in (("kubevirt", kubevirt), ("proxmox", proxmox)):
        outcome = results[name][1]
        assert bool(outcome.file) is expected
        assert (tmp_path / f"debian-i6300esb{results[name][0].file[6:]}").exists() is expected
        if not expected:
            words = platform_words(name, model, action)
            assert outcome.left_out == words.why and (str(model) in words.why or str(action) in words.why)


def test_the_manifest_records_the_platform_files_and_why_one_is_missing(tmp_path):
    manifest = Manifest(name="x", model=Model.IB700, action=Action.RESET,
                        platforms={"kubevirt": {"left_out": "ib700: no"}, "proxmox": {"file": "x.proxmox.sh"}},
                        files=Files(image="x.qcow2", proxmox="x.proxmox.sh"))
    manifest.write(tmp_path)
    again = read_manifest(tmp_path)
    assert again.platforms == manifest.platforms and again.files.proxmox == "x.proxmox.sh"
    data = json.loads((tmp_path / FILE).read_text())
    data["platforms"]["kubevirt"] = {"left_out": 3}
    (tmp_path / FILE).write_text(json.dumps(data))
    with pytest.raises(Exception, match="platforms.kubevirt"):
        read_manifest(tmp_path)


# --- the NoCloud seed the drill attaches (the cloud-init stand-in's) --------------------------------------------

def test_a_nocloud_seed_in_the_manifest_is_attached_read_only(tmp_path):
    from wdimage.drill.build_output import load_build
    from wdimage.vm.launch import LaunchSpec, qemu_argv

    for file in ("x.qcow2", "x.vmlinuz", "seed.img"):
        (tmp_path / file).write_bytes(b"x")
    Manifest(name="x", distro="debian", model=Model.I6300ESB, action=Action.RESET, timeout=15, boot="direct",
             kernel_cmdline="root=LABEL=x", agent=True,
             files=Files(image="x.qcow2", kernel="x.vmlinuz", nocloud_seed="seed.img")).write(tmp_path)
    seed = load_build(tmp_path).seed
    assert seed == tmp_path / "seed.img"
    argv = qemu_argv(LaunchSpec(model=Model.I6300ESB, action=Action.RESET, image=tmp_path / "x.qcow2", seed=seed))
    assert f"file={seed},format=raw,if=virtio,readonly=on" in argv
    assert not any("readonly" in a for a in qemu_argv(LaunchSpec(model=Model.I6300ESB, action=Action.RESET,
                                                                 image=tmp_path / "x.qcow2")))
