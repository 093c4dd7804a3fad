{{/* Names, labels and the values every object shares. */}}

{{- define "spillway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "spillway.fullname" -}}
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

{{/* Labels of every object. */}}
{{- define "spillway.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "spillway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: spillway
{{- end }}

{{/* Selector labels of one component: (dict "root" $ "component" "ingress"). */}}
{{- define "spillway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "spillway.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "spillway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "spillway.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image reference; `latest` is refused. */}}
{{- define "spillway.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if eq $tag "latest" }}
{{- fail "image.tag: `latest` is refused; name the version to run" }}
{{- end }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}

{{- define "spillway.signingSecretName" -}}
{{- default (printf "%s-signing" (include "spillway.fullname" .)) .Values.signingSecrets.existingSecret }}
{{- end }}

{{/* Seconds a pod needs to stop cleanly: the preStop pause, the drain, the producer flush and a margin. */}}
{{- define "spillway.gracePeriod" -}}
{{- add .preStop .drain .root.Values.kafka.deliveryTimeoutSeconds 5 }}
{{- end }}

{{/* Volumes and mounts every Spillway pod has: the config, the signing secrets, /tmp, and the Kafka credentials file. */}}
{{- define "spillway.volumes" -}}
- name: config
  configMap:
    name: {{ include "spillway.fullname" . }}
- name: signing-secrets
  secret:
    secretName: {{ include "spillway.signingSecretName" . }}
- name: tmp
  emptyDir: {}
{{- with .Values.kafka.credentials.existingSecret }}
- name: kafka-credentials
  secret:
    secretName: {{ . }}
{{- end }}
{{- end }}

{{- define "spillway.volumeMounts" -}}
- name: config
  mountPath: /etc/spillway/config
  readOnly: true
- name: signing-secrets
  mountPath: /etc/spillway/secrets
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- if .Values.kafka.credentials.existingSecret }}
- name: kafka-credentials
  mountPath: /etc/spillway/kafka
  readOnly: true
{{- end }}
{{- end }}

{{/* Environment of every Spillway container. */}}
{{- define "spillway.env" -}}
- name: SPILLWAY_CONFIG
  value: /etc/spillway/config/spillway.yaml
{{- with .Values.redis.credentials.existingSecret }}
- name: SPILLWAY_REDIS__NODES
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.redis.credentials.key }}
{{- end }}
{{- end }}

{{/* Zone and node spread of one component: (dict "root" $ "component" "ingress" "spread" .Values.ingress.topologySpread). */}}
{{- define "spillway.topologySpread" -}}
{{- if .spread.enabled }}
topologySpreadConstraints:
  {{- range $key := list "topology.kubernetes.io/zone" "kubernetes.io/hostname" }}
  - maxSkew: {{ $.spread.maxSkew }}
    topologyKey: {{ $key }}
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "spillway.selectorLabels" (dict "root" $.root "component" $.component) | nindent 8 }}
  {{- end }}
{{- end }}
{{- end }}
