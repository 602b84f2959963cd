{{/* Names and labels shared by every template. */}}

{{- define "meridian.labels" -}}
app.kubernetes.io/part-of: meridian
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
meridian.io/profile: {{ .Values.profile }}
{{- end -}}

{{- define "meridian.serviceAccount" -}}
{{- default "meridiand" .Values.serviceAccount.name -}}
{{- end -}}

{{- define "meridian.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "meridian.initImage" -}}
{{- printf "%s:%s" .Values.initImage.repository (default .Chart.AppVersion .Values.initImage.tag) -}}
{{- end -}}

{{/* meridiand's gRPC address as pods in the cluster reach it. */}}
{{- define "meridian.xdsAddress" -}}
{{- printf "meridiand.%s.svc:%d" .Release.Namespace (int .Values.meridiand.grpcPort) -}}
{{- end -}}

{{/* meridiand's TLS xDS address as injected sidecars reach it. */}}
{{- define "meridian.xdsTLSAddress" -}}
{{- printf "meridiand.%s.svc:%d" .Release.Namespace (int .Values.meridiand.xdsTLSPort) -}}
{{- end -}}

{{/* host:port from (list HOST PORT), an IPv6 host in brackets. */}}
{{- define "meridian.hostPort" -}}
{{- $h := index . 0 -}}
{{- if contains ":" $h -}}
{{- printf "[%s]:%d" $h (int (index . 1)) -}}
{{- else -}}
{{- printf "%s:%d" $h (int (index . 1)) -}}
{{- end -}}
{{- end -}}

{{/* The injection webhook's configuration name; meridiand keeps its caBundle current. */}}
{{- define "meridian.webhookName" -}}
{{- printf "meridian-sidecar-injector-%s" .Release.Namespace -}}
{{- end -}}
