"""The `gpuplace` command. Each subcommand lives in its own module and is imported only when used."""

from __future__ import annotations

import argparse
import importlib
import sys

from gpuplace import __version__

# subcommand -> (module, help). Each module exposes `main(argv: list[str]) -> int`.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("gpuplace.demo", "build an example cluster and show where gpuplace places a sample workload"),
    "serve": ("gpuplace.serve", "run the scheduler extender and the admission webhook"),
    "simulate": ("gpuplace.simulate.cli", "replay a GPU cluster trace under a placement policy"),
    "certs": ("gpuplace.certs", "make a development CA and webhook serving certificate"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="gpuplace", description="GPU placement for Kubernetes")
    parser.add_argument("command", choices=["version", *SUBCOMMANDS], help="what to do")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments of the command")
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    ns = parser.parse_args(argv[:1])
    if ns.command == "version":
        print(f"gpuplace {__version__}")
        return 0
    module, _ = SUBCOMMANDS[ns.command]
    return int(importlib.import_module(module).main(argv[1:]))


if __name__ == "__main__":
    sys.exit(main())
