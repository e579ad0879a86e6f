{{/*
Name of the chart, or nameOverride.
*/}}
{{- define "vbs-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name, the prefix of every resource name: fullnameOverride, else
<release>-<name>, else just <release> when the release name already contains the name.
Truncated to 63 characters, the limit of DNS labels (and so of many name fields).
*/}}
{{- define "vbs-operator.fullname" -}}
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
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "vbs-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Image tag: image.tag, else the chart's appVersion.
*/}}
{{- define "vbs-operator.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{/*
Full image reference: repository:tag, or repository:tag@digest when a digest is set.
*/}}
{{- define "vbs-operator.image" -}}
{{- $ref := printf "%s:%s" .Values.image.repository (include "vbs-operator.imageTag" .) }}
{{- if .Values.image.digest }}
{{- $ref = printf "%s@%s" $ref .Values.image.digest }}
{{- end }}
{{- $ref }}
{{- end }}

{{/*
Labels on every resource.
*/}}
{{- define "vbs-operator.labels" -}}
helm.sh/chart: {{ include "vbs-operator.chart" . }}
{{ include "vbs-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ include "vbs-operator.imageTag" . | trunc 63 | trimSuffix "-" | trimSuffix "." | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: vbs-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels: the stable subset of the labels that selects the operator pods. Never change them
in a chart upgrade: a Deployment's selector is immutable.
*/}}
{{- define "vbs-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vbs-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Name of the ServiceAccount the operator runs as.
*/}}
{{- define "vbs-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "vbs-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Whether leader election is on: "true" or "". It is forced on with more than one replica, since two
operators reconciling the same VbsBackups at once would double the load on the cloud and the Events.
*/}}
{{- define "vbs-operator.leaderElection" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicaCount) 1) }}true{{ end }}
{{- end }}

{{/*
Name of the leader-election Lease.
*/}}
{{- define "vbs-operator.leaseName" -}}
{{- default (include "vbs-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/*
Whether a PodDisruptionBudget is rendered: "true" or "". Only with more than one replica: a budget
with minAvailable 1 over a single pod would block every node drain.
*/}}
{{- define "vbs-operator.pdb" -}}
{{- if and .Values.podDisruptionBudget.enabled (gt (int .Values.replicaCount) 1) }}true{{ end }}
{{- end }}
