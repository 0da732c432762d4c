{{/* Shared names, labels and small computations of the kinfer-operator chart. */}}

{{- define "kinfer.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: <release>-kinfer-operator, or the release name if it already contains the chart name. */}}
{{- define "kinfer.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "kinfer.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kinfer.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kinfer.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "kinfer.labels" -}}
helm.sh/chart: {{ include "kinfer.chart" . }}
{{ include "kinfer.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kinfer
{{- end -}}

{{- define "kinfer.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kinfer.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* image reference: repository@digest, or repository:tag (tag defaults to the appVersion). */}}
{{- define "kinfer.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "kinfer.runtimeImage" -}}
{{- printf "%s:%s" .Values.runtimeImage.repository (default .Chart.AppVersion .Values.runtimeImage.tag) -}}
{{- end -}}

{{/* Namespaced mode: the operator watches only .Values.watchNamespaces. */}}
{{- define "kinfer.namespaced" -}}
{{- if .Values.watchNamespaces }}true{{ end -}}
{{- end -}}

{{- define "kinfer.metricsApiServiceName" -}}
{{- printf "%s-metrics-api" (include "kinfer.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kinfer.metricsApiSecretName" -}}
{{- if eq .Values.externalMetrics.certificate.source "secret" -}}
{{- required "externalMetrics.certificate.existingSecret is required when source is secret" .Values.externalMetrics.certificate.existingSecret -}}
{{- else -}}
{{- printf "%s-metrics-api-tls" (include "kinfer.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
