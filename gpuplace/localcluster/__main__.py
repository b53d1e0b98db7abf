"""``python -m gpuplace.localcluster``: a local control plane with the demo nodes, until Ctrl-C.

Starts etcd, kube-apiserver, kube-controller-manager, kwok and upstream kube-scheduler (default
profile, unless ``--no-scheduler``), creates the 16 fake demo nodes (kwok runs the pods bound to
them), prints the admin kubeconfig path, and waits. With ``--gpuplace``, ``gpuplace serve`` runs too (webhook registered) and kube-scheduler
has it as extender. Everything is stopped and removed on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import threading
from types import FrameType

from gpuplace.localcluster.controlplane import ControlPlane
from gpuplace.localcluster.fake_nodes import create_demo_cluster
from gpuplace.localcluster.gpuplace_proc import GpuplaceServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpuplace.localcluster", description=__doc__)
    parser.add_argument("--no-scheduler", action="store_true", help="do not start kube-scheduler")
    parser.add_argument("--no-nodes", action="store_true", help="do not create the demo nodes")
    parser.add_argument("--gpuplace", action="store_true", help="run gpuplace (extender + webhook) as well")
    args = parser.parse_args(argv)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with ControlPlane() as cp, contextlib.ExitStack() as stack:
        gp = stack.enter_context(GpuplaceServer(cp)) if args.gpuplace else None
        if gp is not None:
            print(f"gpuplace: extender {gp.extender_url}, webhook {gp.webhook_base}; log {gp.log_file}",
                  file=sys.stderr)
        if not args.no_scheduler:
            cp.start_scheduler(gp.scheduler_config() if gp else None)
        if not args.no_nodes:

            async def nodes() -> list[str]:
                async with cp.api_client() as api:
                    return await create_demo_cluster(api)

            names = asyncio.run(nodes())
            print(f"created {len(names)} fake nodes", file=sys.stderr)
        print(f"apiserver {cp.server}; logs in {cp.workdir / 'logs'}", file=sys.stderr)
        print(f"export KUBECONFIG={cp.admin_kubeconfig}")
        print(f"kubectl: {cp.binaries.kubectl}", file=sys.stderr)
        print("Ctrl-C to stop", file=sys.stderr)
        sys.stdout.flush()
        stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
