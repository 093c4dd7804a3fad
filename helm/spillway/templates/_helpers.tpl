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

{{/*
The keys of the signing Secret that `secrets` name, as a JSON list (sorted, each once): the
`file:` of each secret under /etc/spillway/secrets/. `secrets` is the sources' secrets (the
ingress verifies with them) or the subscriptions' (the workers sign with them).
*/}}
{{- define "spillway.signingKeys" -}}
{{- $keys := list }}
{{- range .secrets }}
{{- $file := toString (.file | default "") }}
{{- if hasPrefix "/etc/spillway/secrets/" $file }}
{{- $keys = append $keys (trimPrefix "/etc/spillway/secrets/" $file) }}
{{- end }}
{{- end }}
{{- $keys | uniq | sortAlpha | toJson }}
{{- end }}

{{/* The signing Secret's keys the ingress reads: the sources' secrets, never a subscription's. */}}
{{- define "spillway.ingressSigningKeys" -}}
{{- $secrets := list }}
{{- range $name, $source := .Values.sources }}
{{- $secrets = concat $secrets ($source.secrets | default list) }}
{{- end }}
{{- include "spillway.signingKeys" (dict "secrets" $secrets) }}
{{- end }}

{{/* The signing Secret's keys the workers read: the subscriptions' secrets, never a source's. */}}
{{- define "spillway.workerSigningKeys" -}}
{{- $secrets := list }}
{{- range .Values.subscriptions }}
{{- $secrets = concat $secrets (.secrets | default list) }}
{{- end }}
{{- include "spillway.signingKeys" (dict "secrets" $secrets) }}
{{- end }}

{{/*
Volumes every Spillway pod has: the config, /tmp, the Kafka credentials file, and the signing
Secret projected down to `keys` (a JSON list from spillway.signingKeys), so that a pod holds
only the secrets its process uses: (dict "root" $ "keys" (include "spillway.ingressSigningKeys" $)).
No keys: no signing volume at all (a secret volume without items would project every key).
*/}}
{{- define "spillway.volumes" -}}
{{- $keys := fromJsonArray .keys }}
- name: config
  configMap:
    name: {{ include "spillway.fullname" .root }}
{{- if $keys }}
- name: signing-secrets
  secret:
    secretName: {{ include "spillway.signingSecretName" .root }}
    items:
      {{- range $keys }}
      - key: {{ . | quote }}
        path: {{ . | quote }}
      {{- end }}
{{- end }}
- name: tmp
  emptyDir: {}
{{- with .root.Values.kafka.credentials.existingSecret }}
- name: kafka-credentials
  secret:
    secretName: {{ . }}
{{- end }}
{{- end }}

{{/* The mounts of spillway.volumes, with the same (dict "root" $ "keys" ...). */}}
{{- define "spillway.volumeMounts" -}}
- name: config
  mountPath: /etc/spillway/config
  readOnly: true
{{- if fromJsonArray .keys }}
- name: signing-secrets
  mountPath: /etc/spillway/secrets
  readOnly: true
{{- end }}
- name: tmp
  mountPath: /tmp
{{- if .root.Values.kafka.credentials.existingSecret }}
- name: kafka-credentials
  mountPath: /etc/spillway/kafka
  readOnly: true
{{- end }}
{{- end }}

{{/*
The ConfigMap of worker.extraRoots (`worker.extra_roots` in the shared config): mounted where
the config is loaded as a worker's, in the workers and the console, which check that it is
there. Empty without one.
*/}}
{{- define "spillway.extraRootsMount" -}}
{{- if .Values.worker.extraRoots.configMap }}
- name: extra-roots
  mountPath: /etc/spillway/extra-roots
  readOnly: true
{{- end }}
{{- end }}

{{- define "spillway.extraRootsVolume" -}}
{{- with .Values.worker.extraRoots.configMap }}
- name: extra-roots
  configMap:
    name: {{ . }}
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

{{/*
A memory quantity (`256Mi`, `1Gi`, `500M`, `1e9`, `268435456`) in bytes, printed as a whole
number; anything else fails the render. Milli-bytes (`m`) are refused: no memory limit is meant so.
*/}}
{{- define "spillway.bytes" -}}
{{- $quantity := toString . | trim }}
{{- if not (regexMatch "^[0-9]+(\\.[0-9]+)?([KMGTPE]i|[kMGTPE]|[eE][0-9]+)?$" $quantity) }}
{{- fail (printf "%q is not a memory quantity the chart understands (such as 256Mi, 1Gi or 500M)" $quantity) }}
{{- end }}
{{- $number := regexFind "^[0-9]+(\\.[0-9]+)?" $quantity }}
{{- $suffix := trimPrefix $number $quantity }}
{{- $factors := dict "" 1 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "Pi" 1125899906842624 "Ei" 1152921504606846976 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 "P" 1000000000000000 "E" 1000000000000000000 }}
{{- $factor := 1.0 }}
{{- if hasKey $factors $suffix }}
{{- $factor = index $factors $suffix | float64 }}
{{- else }}
{{- range until (int (trimPrefix "e" (lower $suffix))) }}{{ $factor = mulf $factor 10 }}{{ end }}
{{- end }}
{{- printf "%.0f" (mulf (float64 $number) $factor) }}
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
