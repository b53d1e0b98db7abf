{{/* gpuplace's MutatingWebhookConfiguration. Not rendered as an object: the webhook Deployment registers
it (gpuplace/registration.py) once it serves a certificate the caBundle trusts and its Service has a
ready endpoint, so a Fail webhook is never registered with nothing valid behind it; it is owned by
ClusterRole gpuplace-webhook, so `helm uninstall` garbage-collects it. Why each value:
deploy/webhook/README.md. */}}
{{- define "gpuplace.mutatingWebhookConfiguration" -}}
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: gpuplace
  labels:
    app.kubernetes.io/name: gpuplace
    app.kubernetes.io/component: webhook
  {{- if eq .Values.certificates.mode "cert-manager" }}
  annotations:
    cert-manager.io/inject-ca-from: {{ .Release.Namespace }}/gpuplace-webhook
  {{- end }}
webhooks:
  - name: pods.gpuplace.io
    admissionReviewVersions: ["v1"]
    sideEffects: None
    failurePolicy: {{ .Values.webhook.failurePolicy }}
    matchPolicy: Equivalent
    reinvocationPolicy: IfNeeded
    timeoutSeconds: {{ .Values.webhook.timeoutSeconds }}
    clientConfig:
      service:
        name: gpuplace-webhook
        namespace: {{ .Release.Namespace }}
        path: /mutate
        port: 443
    rules:
      - operations: ["CREATE"]
        apiGroups: [""]
        apiVersions: ["v1"]
        resources: ["pods"]
        scope: Namespaced
    namespaceSelector:
      matchExpressions:
        - key: kubernetes.io/metadata.name
          operator: NotIn
          values: ["kube-system", {{ .Release.Namespace | quote }}]
    matchConditions:
      - name: requests-a-gpu
        expression: >-
          (has(object.spec.resourceClaims) && object.spec.resourceClaims.size() > 0)
          || (has(object.spec.containers) && object.spec.containers != null && object.spec.containers.exists(c, has(c.resources) && (
            (has(c.resources.limits) && c.resources.limits.exists(r,
              r == 'nvidia.com/gpu' || r.startsWith('nvidia.com/mig-') ||
              r.startsWith('deviceclass.resource.kubernetes.io/'))) ||
            (has(c.resources.requests) && c.resources.requests.exists(r,
              r == 'nvidia.com/gpu' || r.startsWith('nvidia.com/mig-') ||
              r.startsWith('deviceclass.resource.kubernetes.io/'))))))
          || (has(object.spec.initContainers) && object.spec.initContainers.exists(c, has(c.resources) && (
            (has(c.resources.limits) && c.resources.limits.exists(r,
              r == 'nvidia.com/gpu' || r.startsWith('nvidia.com/mig-') ||
              r.startsWith('deviceclass.resource.kubernetes.io/'))) ||
            (has(c.resources.requests) && c.resources.requests.exists(r,
              r == 'nvidia.com/gpu' || r.startsWith('nvidia.com/mig-') ||
              r.startsWith('deviceclass.resource.kubernetes.io/'))))))
{{- end }}
