{{/*
Chart name (app.kubernetes.io/name), truncated to the 63 characters of a label value.
*/}}
{{- define "oreal-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects: <release>-<chart>, or <release> when it already contains the chart name.
*/}}
{{- define "oreal-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart name and version (helm.sh/chart label).
*/}}
{{- define "oreal-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object of the chart.
*/}}
{{- define "oreal-operator.labels" -}}
helm.sh/chart: {{ include "oreal-operator.chart" . }}
{{ include "oreal-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: oreal
{{- end }}

{{/*
Labels that select the operator's pod (immutable in the Deployment: keep them stable).
*/}}
{{- define "oreal-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "oreal-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Name of the operator's ServiceAccount.
*/}}
{{- define "oreal-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "oreal-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Image of the operator: repository:tag, the tag defaulting to the chart's appVersion.
*/}}
{{- define "oreal-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
Image of the run pods: workerImage, defaulting to oreal-worker beside the operator image (same
registry path, same tag): images/worker/Dockerfile builds it.
*/}}
{{- define "oreal-operator.workerImage" -}}
{{- $dir := dir .Values.image.repository }}
{{- $repository := ternary "oreal-worker" (printf "%s/oreal-worker" $dir) (eq $dir ".") }}
{{- default (printf "%s:%s" $repository (default .Chart.AppVersion .Values.image.tag)) .Values.workerImage }}
{{- end }}

{{/*
Name of the leader-election Lease (in the release namespace).
*/}}
{{- define "oreal-operator.leaseName" -}}
{{- printf "%s-leader" (include "oreal-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Secrets the run pods pull their image with, comma-separated (env OREAL_WORKER_IMAGE_PULL_SECRETS):
the names in workerImagePullSecrets; when it is null, those in imagePullSecrets ([] means none).
*/}}
{{- define "oreal-operator.workerImagePullSecrets" -}}
{{- $names := list }}
{{- $secrets := .Values.workerImagePullSecrets }}
{{- if kindIs "invalid" $secrets }}{{ $secrets = .Values.imagePullSecrets }}{{ end }}
{{- range $secrets }}
{{- $names = append $names .name }}
{{- end }}
{{- join "," $names }}
{{- end }}

{{/*
Fail when a Prometheus Operator monitor is enabled but its API is missing, instead of silently skipping it.
Usage: include "oreal-operator.requireMonitoringAPI" (list . "serviceMonitor")
*/}}
{{- define "oreal-operator.requireMonitoringAPI" -}}
{{- $root := index . 0 }}
{{- if not ($root.Capabilities.APIVersions.Has "monitoring.coreos.com/v1") }}
{{- fail (printf "%s.enabled is true but the cluster has no monitoring.coreos.com/v1 API: install the Prometheus Operator CRDs first (with helm template, pass --api-versions monitoring.coreos.com/v1)" (index . 1)) }}
{{- end }}
{{- end }}
