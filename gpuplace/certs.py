"""`gpuplace certs`: a development CA and webhook serving certificate (cryptography library).

For production use cert-manager or your own PKI; this is for kind clusters and local runs. It prints the
caBundle for the MutatingWebhookConfiguration and the command that stores the pair as the Secret the
Deployment mounts in cert-manager mode (the chart and deploy/gpuplace default to self-managed
certificates: gpuplace/certctl.py).
"""

from __future__ import annotations

import argparse

from webhook.devcerts import DEFAULT_NAMESPACE, DEFAULT_SERVICE, make_dev_certs


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="gpuplace certs", description=__doc__)
    ap.add_argument("--out", default="certs", help="directory for ca.crt, tls.crt, tls.key (default: certs)")
    ap.add_argument("--namespace", default=DEFAULT_NAMESPACE)
    ap.add_argument("--service", default=DEFAULT_SERVICE)
    ap.add_argument("--san", action="append", help="subject alternative name, e.g. DNS:x or IP:10.0.0.1 "
                    "(repeatable; default: 127.0.0.1, localhost and <service>.<namespace>.svc)")
    ap.add_argument("--days", type=int, default=365)
    args = ap.parse_args(argv)
    try:
        certs = make_dev_certs(args.out, sans=args.san, namespace=args.namespace, service=args.service,
                               days=args.days)
    except ValueError as e:
        ap.error(str(e))
    print(f"wrote {certs.ca_cert}, {certs.cert}, {certs.key}")
    print(f"kubectl -n {args.namespace} create secret tls gpuplace-webhook-tls --cert={certs.cert} --key={certs.key}")
    print(f"caBundle: {certs.ca_bundle()}")
    return 0
