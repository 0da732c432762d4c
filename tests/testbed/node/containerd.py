"""The real node's container runtime: containerd 2 with runc, CNI from Debian's plugins, images from archives.

containerd keeps everything under the node's directory (root, state, socket, runc state, network namespaces, CNI
configuration and IPAM data); the few paths it and the CNI library use machine-wide (``/run/containerd/s`` for
shim sockets, ``/var/lib/cni/results``) are cleaned by undo commands written into the ledger before it starts.
Images are never pulled: kinfer's OCI archives (images/build.sh) are imported into the ``k8s.io`` namespace,
where the kubelet finds them, and tagged with the names the chart and the operator use by default.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..ledger import Ledger
from ..process import ManagedProcess
from . import undo
from .network import NodeNetwork, run

CNI_BIN_DIR = Path("/usr/lib/cni")  # Debian's containernetworking-plugins
SHIM_SOCKETS = Path("/run/containerd/s")


class Containerd:
    """containerd for one node: ``start`` records and starts it, ``import_images`` loads the archives."""

    def __init__(self, root: Path, binaries: Path, runc: Path, network: NodeNetwork, sandbox_image: str) -> None:
        self.root = root
        self.binaries = binaries  # containerd, containerd-shim-runc-v2, ctr (tests/testbed/build.sh containerd)
        self.runc = runc
        self.network = network
        self.sandbox_image = sandbox_image
        self.socket = root / "containerd.sock"
        self.runc_root = root / "runc"
        self.process: ManagedProcess | None = None

    def start(self, ledger: Ledger, log_dir: Path) -> ManagedProcess:
        cni = self.root / "cni"
        (cni / "net.d").mkdir(parents=True, exist_ok=True)
        (cni / "net.d" / "10-kinfer.conflist").write_text(json.dumps(self.network.cni_config(cni / "ipam"), indent=2))
        config = self.root / "config.toml"
        config.write_text(self.config(cni / "net.d"))
        ledger.command(undo.command("stale-sockets", SHIM_SOCKETS), "sockets of killed shims, their directory")
        ledger.command(
            undo.command("cni-results", self.network.cni_network), "CNI results of sandboxes killed without a DEL"
        )
        # Shims run in process groups of their own: stopping containerd leaves them.
        ledger.command(undo.command("kill-shims", self.socket), "containerd's runc shims")
        env = dict(os.environ)
        env["PATH"] = f"{self.binaries}:{self.runc.parent}:{env.get('PATH', '')}"  # it starts the shim by name
        self.process = ManagedProcess(
            name="node-containerd",
            command=[str(self.binaries / "containerd"), "--config", str(config), "--log-level", "info"],
            log_path=log_dir / "node-containerd.log",
            ready=lambda: self.socket.exists() and self.ctr("version") != "",
            env=env,
            on_spawn=lambda pid: ledger.process("node-containerd", pid),
        )
        self.process.start()
        return self.process

    def config(self, cni_conf_dir: Path) -> str:
        # Version 3 as containerd 2.0-2.3 write it; 2.4 migrates it to its version 4 in memory at start (a warning
        # line; `containerd config migrate` shows the same keys). No imports: nothing of /etc/containerd.
        return f"""\
version = 3
imports = []
root = "{self.root / "root"}"
state = "{self.root / "state"}"
# No NRI socket (/var/run/nri is machine-wide): this containerd must not meet another one there.
disabled_plugins = ["io.containerd.nri.v1.nri"]

[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{self.root / "opt"}"

[plugins."io.containerd.cri.v1.runtime"]
  # Lowering an OOM score needs CAP_SYS_RESOURCE, which processes here lack: without this every sandbox fails
  # with "nsexec: failed to update /proc/self/oom_score_adj: Permission denied".
  restrict_oom_score_adj = true
  # Network namespaces under containerd's state dir instead of the machine-wide /var/run/netns.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "{self.runc}"
        Root = "{self.runc_root}"
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["{CNI_BIN_DIR}"]
    conf_dir = "{cni_conf_dir}"
    max_conf_num = 1

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{self.sandbox_image}"
"""

    def ctr(self, *args: str) -> str:
        return run(self.binaries / "ctr", "--address", str(self.socket), "-n", "k8s.io", *args)

    def import_images(self, archives: Sequence[Path], tags: Mapping[str, str]) -> None:
        """Import OCI archives, then tag: ``tags`` maps a new name to an imported one."""
        for archive in archives:
            self.ctr("images", "import", "--local", str(archive))
        for name, source in tags.items():
            self.ctr("images", "tag", "--force", source, name)
        names = set(self.ctr("images", "list", "-q").split())
        missing = {self.sandbox_image, *tags} - names
        if missing:
            raise RuntimeError(f"real node: images missing after import: {sorted(missing)}; have {sorted(names)}")
