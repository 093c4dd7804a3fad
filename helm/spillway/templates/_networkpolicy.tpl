{{/* Egress to one port on the given CIDRs, or on any address when there are none. */}}
{{- define "spillway.egressTo" -}}
- ports:
    - port: {{ .port }}
      protocol: TCP
  {{- with .cidrs }}
  to:
    {{- range . }}
    - ipBlock:
        cidr: {{ . }}
    {{- end }}
  {{- end }}
{{- end }}

{{/* The OTLP collector, when traces are exported. */}}
{{- define "spillway.egressCollector" -}}
{{- if .Values.telemetry.otlpEndpoint }}
{{- include "spillway.egressTo" (dict "port" .Values.networkPolicy.collector.port "cidrs" .Values.networkPolicy.collector.cidrs) }}
{{- end }}
{{- end }}

{{/* HTTPS out of the ingress when a source is aws-sns: it fetches SNS signing certificates and
confirms subscriptions (docs/providers.md, "AWS SNS"). */}}
{{- define "spillway.egressSns" -}}
{{- $sns := false }}
{{- range $name, $source := .Values.sources }}
{{- if eq (dig "verify" "scheme" "" $source) "aws-sns" }}{{ $sns = true }}{{ end }}
{{- end }}
{{- if $sns }}
{{- include "spillway.egressTo" (dict "port" 443 "cidrs" .Values.networkPolicy.sns.cidrs) }}
{{- end }}
{{- end }}

{{/* The object store, when large bodies go there (docs/fleet.md, "Large payloads by
reference"): the ingress writes them, the workers read them. */}}
{{- define "spillway.egressObjects" -}}
{{- if .Values.objects.config }}
{{- include "spillway.egressTo" (dict "port" .Values.objects.port "cidrs" .Values.networkPolicy.objectsCidrs) }}
{{- end }}
{{- end }}

{{/* DNS, wherever the cluster's resolver is. */}}
{{- define "spillway.egressDns" -}}
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- end }}

{{/* The admin port, from the monitoring namespace only. */}}
{{- define "spillway.ingressAdmin" -}}
- from:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ .root.Values.networkPolicy.monitoringNamespace }}
  ports:
    - port: admin
      protocol: TCP
{{- end }}
