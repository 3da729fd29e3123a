{{/* Chart name, truncated to 63 characters (DNS label). */}}
{{- define "khr.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-qualified unless the release name already contains the chart name. */}}
{{- define "khr.fullname" -}}
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

{{/* Name of the cluster-scoped objects (ClusterRole, ClusterRoleBinding):
release-qualified *and* namespace-qualified, so that two releases of the same
name in different namespaces do not take over each other's. Not truncated:
these names are not DNS labels (up to 253 characters). */}}
{{- define "khr.clusterScopedName" -}}
{{- printf "%s-%s" .Release.Namespace (include "khr.fullname" .) }}
{{- end }}

{{- define "khr.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that never change over the life of a release (used in selectors). */}}
{{- define "khr.selectorLabels" -}}
app.kubernetes.io/name: {{ include "khr.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "khr.labels" -}}
helm.sh/chart: {{ include "khr.chart" . }}
{{ include "khr.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: webhook-receiver
app.kubernetes.io/part-of: kargo
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "khr.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "khr.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "khr.leaseName" -}}
{{- default (include "khr.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/* The required base URL; fails rendering with a clear message when unset. */}}
{{- define "khr.baseURL" -}}
{{- required "baseURL is required: set it to the externally visible URL Harbor will call, e.g. --set baseURL=https://kargo-webhooks.example.com (receiver URLs are derived from it)" .Values.baseURL }}
{{- end }}

{{- define "khr.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "khr.tlsMountPath" -}}
/etc/kargo-harbor-receiver/tls
{{- end }}

{{/* Verbs on Secrets for the chosen secretAccess. A metadata-only watch is
still a list + watch on secrets for RBAC: it grants the same reach as reading
every Secret in scope, which is why "get" exists. */}}
{{- define "khr.secretVerbs" -}}
{{- if eq .Values.secretAccess "get" -}}
["get"]
{{- else -}}
["get", "list", "watch"]
{{- end }}
{{- end }}
