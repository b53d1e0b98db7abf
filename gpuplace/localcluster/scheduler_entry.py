"""kube-scheduler's side of a local gpuplace: its extender entry and KubeSchedulerConfiguration.

Read from deploy/scheduler (the entry users merge into their kube-scheduler configuration, or
:func:`default_extender_entry` when deploy/ has none); only the place changes: ``urlPrefix`` points at
the local process and ``tlsConfig.caFile`` at the harness CA.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from gpuplace.localcluster import manifests
from gpuplace.localcluster.manifests import deep_merge
from placement_core import MODELS

GPU_RESOURCE = "nvidia.com/gpu"
DRA_MARKER_RESOURCE = "gpuplace.io/dra-gpu"  # webhook.settings.DraSettings.marker_resource


def mig_resource_names() -> list[str]:
    """``nvidia.com/mig-<profile>`` for every MIG profile of every catalog model (managedResources)."""
    names = {f"nvidia.com/mig-{p.resource_suffix}" for m in MODELS.values() for p in m.mig_profiles}
    return sorted(names)


def default_extender_entry() -> dict[str, Any]:
    """The extender entry used when deploy/ has no KubeSchedulerConfiguration (documented in deploy/scheduler)."""
    return {
        "urlPrefix": "http://127.0.0.1:8888/scheduler",
        "filterVerb": "filter",
        "prioritizeVerb": "prioritize",
        "preemptVerb": "preempt",
        "bindVerb": "bind",
        "weight": 5,
        "enableHTTPS": False,
        "httpTimeout": "30s",
        "nodeCacheCapable": True,
        "ignorable": False,
        "managedResources": [
            *({"name": name, "ignoredByScheduler": False} for name in [GPU_RESOURCE, *mig_resource_names()]),
            {"name": DRA_MARKER_RESOURCE, "ignoredByScheduler": True},
        ],
    }


def extender_entry(url: str, *, https: bool, ca_file: Path) -> dict[str, Any]:
    """deploy/'s gpuplace extender entry (or the default), pointed at ``url``."""
    entry: dict[str, Any] | None = None
    for cfg in manifests.scheduler_configurations():
        for ext in cfg.get("extenders") or []:
            if entry is None or "gpuplace" in str(ext.get("urlPrefix", "")):
                entry = copy.deepcopy(dict(ext))
    entry = entry or default_extender_entry()
    entry["urlPrefix"] = url
    entry["enableHTTPS"] = https
    if https:
        entry["tlsConfig"] = {"caFile": str(ca_file)}
    else:
        entry.pop("tlsConfig", None)
    return entry


def scheduler_config(entry: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """A KubeSchedulerConfiguration for ``ControlPlane.start_scheduler`` with ``entry`` as its extender."""
    base: dict[str, Any] = {"percentageOfNodesToScore": 100}
    for cfg in manifests.scheduler_configurations():
        if cfg.get("extenders"):
            for key in ("percentageOfNodesToScore", "profiles", "parallelism"):
                if key in cfg:
                    base[key] = copy.deepcopy(cfg[key])
            break
    base["extenders"] = [entry]
    return deep_merge(base, overrides)
