"""The work of gpuctl's host stages (facts, preflight, os, packages, runtime; see
docs/install.md) written as a pyinfra deploy, for bench/install. Same files, same content,
same checks as gpuctl on the same inventory: bench/install compares the nodes' end state
across the tools.

Host data (bench/install writes the inventory): internal_address, role; global data:
bundle_dir (the local directory with the .debs), debs (their file names), data_dirs,
registry_mirror. Run with --sudo.
"""

import io
import json
import os
import sys

from pyinfra import host, inventory
from pyinfra.facts.server import Command
from pyinfra.facts.files import FileContents
from pyinfra.operations import files, server, systemd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemon_json import merge_daemon_json  # noqa: E402

DEB_DIR = "/var/cache/gpuctl/debs"
MODULES = ["overlay", "br_netfilter"]
SYSCTLS = [
    ("net.ipv4.ip_forward", "1"),
    ("net.bridge.bridge-nf-call-iptables", "1"),
    ("net.bridge.bridge-nf-call-ip6tables", "1"),
    ("fs.inotify.max_user_instances", "8192"),
    ("fs.inotify.max_user_watches", "655360"),
]
SET_KEYS = ["exec-opts", "insecure-registries", "registry-mirrors"]
data = host.data
mirror = data.registry_mirror
DAEMON_JSON = {
    "exec-opts": ["native.cgroupdriver=systemd"],
    "log-driver": "json-file",
    "log-opts": {"max-size": "100m", "max-file": "3"},
    "registry-mirrors": [f"http://{mirror}"],
    "insecure-registries": [mirror],
}

# --- facts ----------------------------------------------------------------------------
facts_text = host.get_fact(
    Command,
    "if [ -f /.dockerenv ] || [ -f /run/.containerenv ] || grep -qa 'container=' /proc/1/environ 2>/dev/null; "
    "then echo container=1; else echo container=0; fi; "
    "echo cpus=$(getconf _NPROCESSORS_ONLN); awk '/^MemTotal:/ {print \"mem_kib=\" $2}' /proc/meminfo; "
    "awk 'NR>1 {print \"swap=\" $1}' /proc/swaps; "
    "for c in ip iptables mount nsenter; do command -v \"$c\" >/dev/null 2>&1 || echo \"missing=$c\"; done; "
    "for d in /var/lib " + " ".join(data.data_dirs) + "; do p=$d; while [ ! -e \"$p\" ]; do p=$(dirname \"$p\"); done; "
    "df -P \"$p\" | awk -v d=\"$d\" 'NR==2 {sub(\"%\",\"\",$5); print \"disk=\" d \" \" $6 \" \" $5}'; done",
)
facts = [line.split("=", 1) for line in (facts_text or "").splitlines() if "=" in line]
container = ("container", "1") in [tuple(f) for f in facts]

# --- preflight: every failure listed at once -------------------------------------------
problems = [f"missing command {v}" for k, v in facts if k == "missing"]
problems += [f"disk {v}% full" for k, v in facts if k == "disk" and int(v.split()[-1]) >= 90]
if data.role == "server":
    cpus = int(dict(facts)["cpus"])
    mem_mib = int(dict(facts)["mem_kib"]) // 1024
    if cpus < 2:
        problems.append(f"a server needs 2 CPUs, this one has {cpus}")
    if mem_mib < 1700:
        problems.append(f"a server needs 1700 MiB, this one has {mem_mib}")
if problems:
    raise SystemExit(f"{host.name}: preflight: " + "; ".join(problems))

# --- os ---------------------------------------------------------------------------------
files.replace(
    name="Os | swap lines in /etc/fstab commented out",
    path="/etc/fstab",
    text=r"^([[:space:]]*[^#[:space:]][^[:space:]]*[[:space:]]+[^[:space:]]+[[:space:]]+swap([[:space:]].*)?)$",
    replace=r"# \1",
    extended_regex=True,
)
if not container and any(k == "swap" for k, _ in facts):
    server.shell(name="Os | swap off now", commands=["swapoff -a"])

# files.block creates the file but not its directory.
for d in ("/etc/modules-load.d", "/etc/sysctl.d"):
    files.directory(name=f"Os | {d}", path=d)
files.block(
    name="Os | modules persisted",
    path="/etc/modules-load.d/gpuctl.conf",
    content="\n".join(MODULES),
    marker="# {mark} gpuctl os",
)
loaded = host.get_fact(
    Command,
    "for n in " + " ".join(MODULES) + "; do m=$(printf %s \"$n\" | tr - _); "
    "if [ -d \"/sys/module/$m\" ] || grep -qs \"^$m \" /proc/modules "
    "|| grep -qs \"/$n.ko\" \"/lib/modules/$(uname -r)/modules.builtin\"; then echo \"$n\"; fi; done",
    # a Command fact is None when the command printed nothing
) or ""
loaded = loaded.split()
for module in MODULES:
    if module not in loaded:
        server.modprobe(name=f"Os | module {module} loaded", module=module, _ignore_errors=container)

files.block(
    name="Os | sysctls persisted",
    path="/etc/sysctl.d/90-gpuctl.conf",
    content="\n".join(f"{k} = {v}" for k, v in SYSCTLS),
    marker="# {mark} gpuctl os",
)
# files.block writes through mktemp, so a new file would be left mode 600.
for f in ("/etc/modules-load.d/gpuctl.conf", "/etc/sysctl.d/90-gpuctl.conf"):
    files.file(name=f"Os | {f} mode", path=f, mode="644")
for key, value in SYSCTLS:
    server.sysctl(name=f"Os | sysctl {key}", key=key, value=value, _ignore_errors=container)

# /etc/hosts is a bind mount in a container, so files.block's rename cannot replace it:
# the same block is computed here and the file rewritten in place when it differs.
hosts_block = ["# BEGIN gpuctl hosts"]
hosts_block += [f"{h.data.internal_address} {h.name}" for h in inventory]
hosts_block += ["# END gpuctl hosts"]
now = host.get_fact(FileContents, path="/etc/hosts") or []
if hosts_block[0] in now and hosts_block[-1] in now:
    start, end = now.index(hosts_block[0]), now.index(hosts_block[-1])
    wanted = now[:start] + hosts_block + now[end + 1:]
else:
    wanted = now + hosts_block
if wanted != now:
    server.shell(
        name="Os | every node in /etc/hosts",
        commands=["cat > /etc/hosts <<'GPUCTL_HOSTS_EOF'\n" + "\n".join(wanted) + "\nGPUCTL_HOSTS_EOF"],
    )

for d in data.data_dirs:
    files.directory(name=f"Os | data directory {d}", path=d, mode="755")

# --- packages -----------------------------------------------------------------------------
for deb in data.debs:
    files.put(
        name=f"Packages | {deb} on the node",
        src=os.path.join(data.bundle_dir, deb),
        dest=f"{DEB_DIR}/{deb}",
        mode="644",
    )
todo = host.get_fact(
    Command,
    "for f in " + " ".join(data.debs) + "; do n=${f%%_*}; v=${f#*_}; v=${v%_*}; "
    "v=$(printf %s \"$v\" | sed 's/%3a/:/'); "
    "have=$(dpkg-query -W -f '${db:Status-Abbrev} ${Version}' \"$n\" 2>/dev/null); "
    "case \"$have\" in ii*) dpkg --compare-versions \"${have##* }\" ge \"$v\" && continue ;; esac; "
    f"echo {DEB_DIR}/$f; done",
)
todo = (todo or "").split()
if todo:
    server.shell(
        name="Packages | installed offline",
        commands=[
            "DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "
            "-o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts=/dev/null "
            "-o DPkg::Lock::Timeout=120 -o Dpkg::Options::=--force-confold " + " ".join(todo)
        ],
    )

# --- runtime --------------------------------------------------------------------------------
host.get_fact(Command, "command -v dockerd")
current = host.get_fact(FileContents, path="/etc/docker/daemon.json")
merged = merge_daemon_json(json.loads("\n".join(current)) if current else {}, DAEMON_JSON, SET_KEYS)
daemon = files.put(
    name="Runtime | merge daemon.json",
    src=io.StringIO(json.dumps(merged, indent=4) + "\n"),
    dest="/etc/docker/daemon.json",
    mode="644",
)
# pyinfra's systemd facts read `systemctl show --property Id`, which the lab's systemctl
# stand-in does not print: asked directly instead, so pyinfra does no work a real systemd
# would have spared it.
docker_state = (host.get_fact(Command, "systemctl is-enabled docker; systemctl is-active docker; true") or "").split()
if docker_state != ["enabled", "active"]:
    systemd.service(name="Runtime | docker enabled and running", service="docker", running=True, enabled=True)
systemd.service(
    name="Runtime | docker restarted when daemon.json changed",
    service="docker",
    restarted=True,
    _if=daemon.did_change,
)
