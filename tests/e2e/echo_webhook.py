"""A tiny HTTPS mutating webhook run as a child process by the harness test.

It stands in for ``gpuplace serve``: started with ControlPlane.start_process, serving a certificate
from ControlPlane.issue_serving_cert, registered with ControlPlane.register_webhook. It labels
every pod it sees with ``gpuplace.io/echo=seen``. Standard library only.
"""

from __future__ import annotations

import argparse
import base64
import json
import ssl
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._send(200 if self.path == "/healthz" else 404, b"ok")

    def do_POST(self) -> None:
        review = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        request = review["request"]
        labels = (request["object"].get("metadata") or {}).get("labels")
        if labels is None:
            patch = [{"op": "add", "path": "/metadata/labels", "value": {"gpuplace.io/echo": "seen"}}]
        else:
            patch = [{"op": "add", "path": "/metadata/labels/gpuplace.io~1echo", "value": "seen"}]
        response = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {
                "uid": request["uid"],
                "allowed": True,
                "patchType": "JSONPatch",
                "patch": base64.b64encode(json.dumps(patch).encode()).decode(),
            },
        }
        self._send(200, json.dumps(response).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
