"""Rule 4: route GPU pods to gpuplace's scheduler profile (off by default).

Why: in the deployment mode where gpuplace runs as a second kube-scheduler, GPU pods must name it or the
default scheduler places them without gpuplace. Only a schedulerName left at the default is replaced; a
pod that names any other scheduler (Volcano, KAI, a test scheduler) was routed on purpose and is kept.
The apiserver defaults schedulerName to `default-scheduler` before mutating webhooks run, so that value
is what "left at the default" looks like here.
"""

from __future__ import annotations

from typing import Any

from webhook.rules import Findings
from webhook.settings import WebhookSettings


def apply(pod: dict[str, Any], *, settings: WebhookSettings, findings: Findings) -> None:
    routing = settings.routing
    if not routing.enabled:
        return
    spec = pod["spec"]
    current = spec.get("schedulerName") or ""
    if current in routing.replace and current != routing.scheduler_name:
        spec["schedulerName"] = routing.scheduler_name
