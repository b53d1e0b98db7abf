{{/* Labels every object carries. app.kubernetes.io/name is gpuplace for all of them; the component says which part. */}}
{{- define "gpuplace.labels" -}}
app.kubernetes.io/name: gpuplace
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}

{{- define "gpuplace.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* The managed resources: files/managed-resources.yaml (the one list) plus scheduler.extraManagedResources,
then the webhook's DRA marker (webhook.settings.dra.marker_resource, default gpuplace.io/dra-gpu; null drops
it) with ignoredByScheduler: true, so pods whose GPUs come from ResourceClaims reach gpuplace too
(scheduler/README.md, "DRA registration"). */}}
{{- define "gpuplace.managedResources" -}}
{{- $names := concat (.Files.Get "files/managed-resources.yaml" | fromYamlArray) .Values.scheduler.extraManagedResources -}}
{{- range $names }}
- {name: {{ . }}, ignoredByScheduler: false}
{{- end }}
{{- $marker := dig "dra" "marker_resource" "gpuplace.io/dra-gpu" (.Values.webhook.settings | default dict) -}}
{{- if $marker }}
- {name: {{ $marker }}, ignoredByScheduler: true}
{{- end }}
{{- end }}

{{/* The KubeSchedulerConfiguration extenders[] entry (why each value: deploy/scheduler/kube-scheduler-config.yaml). */}}
{{- define "gpuplace.extenderEntry" -}}
- urlPrefix: {{ .Values.scheduler.urlPrefix | default (printf "http://gpuplace.%s.svc:%d/scheduler" .Release.Namespace (int .Values.extender.port)) | quote }}
  filterVerb: filter
  prioritizeVerb: prioritize
  preemptVerb: preempt
  bindVerb: bind
  weight: {{ .Values.scheduler.weight }}
  enableHTTPS: false
  httpTimeout: {{ .Values.scheduler.httpTimeout }}
  nodeCacheCapable: true
  ignorable: {{ .Values.scheduler.ignorable }}
  managedResources:
{{- include "gpuplace.managedResources" . | indent 4 }}
{{- end }}

{{/* Pod-level security settings shared by both gpuplace Deployments (the image runs as 65532). */}}
{{- define "gpuplace.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile: {type: RuntimeDefault}
{{- end }}

{{- define "gpuplace.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities: {drop: [ALL]}
{{- end }}

{{/* Downward API: the pod's own name and namespace (Lease identity, Secret namespace). */}}
{{- define "gpuplace.podEnv" -}}
- name: POD_NAME
  valueFrom: {fieldRef: {fieldPath: metadata.name}}
- name: POD_NAMESPACE
  valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
- {name: NUMBA_CACHE_DIR, value: /var/cache/numba}
- {name: NUMBA_CPU_NAME, value: generic}
{{- end }}

{{- define "gpuplace.wantMonitor" -}}
{{- $mode := index . 0 -}}{{- $api := index . 1 -}}{{- $caps := index . 2 -}}
{{- if or (eq $mode "always") (and (eq $mode "auto") ($caps.APIVersions.Has $api)) -}}true{{- end -}}
{{- end }}
