"""Rule 1: GPU pods tolerate the GPU-node taint.

Why: GPU nodes are tainted so that CPU-only pods stay off them; a GPU pod without the toleration would be
unschedulable for a reason its author never thinks of. The rule adds the configured toleration unless
the pod already has one that tolerates the same taint (Kubernetes' own matching: an empty key with
Exists tolerates everything; an empty effect tolerates every effect; Exists ignores the value). A
toleration the user wrote is never changed, including its tolerationSeconds.
"""

from __future__ import annotations

from typing import Any

from webhook.errors import MalformedReviewError
from webhook.rules import Findings
from webhook.settings import GpuToleration, WebhookSettings


def apply(pod: dict[str, Any], *, settings: WebhookSettings, findings: Findings) -> None:
    wanted = settings.toleration
    if wanted is None:
        return
    spec = pod["spec"]
    existing = spec.get("tolerations")
    if existing is None:
        existing = []
    if not isinstance(existing, list) or not all(isinstance(t, dict) for t in existing):
        raise MalformedReviewError("spec.tolerations must be a list of objects")
    if any(covers(toleration, wanted) for toleration in existing):
        return
    spec["tolerations"] = [*existing, wanted.as_kubernetes()]


def covers(toleration: dict[str, Any], wanted: GpuToleration) -> bool:
    """Whether `toleration` tolerates every taint that `wanted` tolerates."""
    effect = toleration.get("effect") or ""
    if effect and effect != wanted.effect:
        return False
    operator = toleration.get("operator") or "Equal"
    key = toleration.get("key") or ""
    if not key:
        return operator == "Exists"
    if key != wanted.key:
        return False
    if operator == "Exists":
        return True
    if operator == "Equal":
        return wanted.operator == "Equal" and (toleration.get("value") or "") == wanted.value
    return False
