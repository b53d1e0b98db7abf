"""gpuplace's mutating admission webhook for pod CREATE.

What it does to GPU pods (pods naming `nvidia.com/gpu`, `nvidia.com/mig-*` or configured resources, and
pods whose resource claims ask for a GPU DeviceClass): adds the GPU-node toleration, makes GPU requests equal limits (or denies conflicts with a precise
message), labels members of multi-pod jobs with a gang name and size, and optionally routes them to
gpuplace's scheduler profile. Other pods pass untouched.

Layout (each module's docstring says why it is shaped that way):
- `engine.admit / evaluate`: review dict → response dict, no HTTP; `rules/`: one module per rule;
- `dra`: which of a pod's resource claims ask for GPUs (claim, template and DeviceClass reads);
- `owners`: the API reads behind gang sizes and claims (`KubeOwners` with a TTL cache, `DictOwners` for tests);
- `http.make_webhook_app`: the aiohttp application and its metrics;
- `tls.ReloadingTLS` / `tls.reload_ctx`: serving TLS that follows mounted Secret files;
- `devcerts.make_dev_certs`: a development CA and serving certificate;
- `settings.WebhookSettings`: every knob, with its default.
"""

from webhook.devcerts import make_dev_certs
from webhook.engine import Verdict, admit, evaluate
from webhook.errors import MalformedReviewError, ReviewError
from webhook.http import WebhookMetrics, make_webhook_app
from webhook.owners import DictOwners, KubeOwners, Owners
from webhook.settings import DraSettings, GpuToleration, SchedulerRouting, WebhookSettings
from webhook.tls import ReloadingTLS, reload_ctx

__all__ = [
    "DictOwners",
    "DraSettings",
    "GpuToleration",
    "KubeOwners",
    "MalformedReviewError",
    "Owners",
    "ReloadingTLS",
    "ReviewError",
    "SchedulerRouting",
    "Verdict",
    "WebhookMetrics",
    "WebhookSettings",
    "admit",
    "evaluate",
    "make_dev_certs",
    "make_webhook_app",
    "reload_ctx",
]
