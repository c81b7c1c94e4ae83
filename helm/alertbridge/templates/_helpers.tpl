{{/*
The chart name, or nameOverride.
*/}}
{{- define "alertbridge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The name of the release's resources: fullnameOverride, else "<release>-alertbridge"
(just "<release>" when the release name already contains the chart name).
Truncated to 63 characters because some Kubernetes name fields (DNS labels) are
limited to that.
*/}}
{{- define "alertbridge.fullname" -}}
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
{{- define "alertbridge.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every resource.
*/}}
{{- define "alertbridge.labels" -}}
helm.sh/chart: {{ include "alertbridge.chart" . }}
{{ include "alertbridge.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels: name and instance only, so that selectors never change
between chart versions (they are immutable on a Deployment).
*/}}
{{- define "alertbridge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "alertbridge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The ServiceAccount the pod runs as.
*/}}
{{- define "alertbridge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "alertbridge.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The Secret whose keys become the container's environment variables: the
chart's own, or existingSecret. Empty when there is neither.
*/}}
{{- define "alertbridge.secretName" -}}
{{- if .Values.existingSecret }}
{{- .Values.existingSecret }}
{{- else if .Values.secrets }}
{{- include "alertbridge.fullname" . }}
{{- end }}
{{- end }}

{{/*
The port alertbridge listens on inside the pod: the port of config.server.listen.
*/}}
{{- define "alertbridge.containerPort" -}}
{{- .Values.config.server.listen | splitList ":" | last | atoi }}
{{- end }}

{{/*
config.toml, rendered from .Values.config with Helm's toToml. Numbers in values
files reach templates as floats, which toToml would write as 1.048576e+06;
alertbridge.integers turns whole ones back into integers first (on a copy).
Fails when the TOML refers to a ${VAR} (without a :-default) that neither the
chart's Secret nor `env` provides, instead of letting the pod crash-loop.
*/}}
{{- define "alertbridge.configToml" -}}
{{- $config := deepCopy .Values.config }}
{{- include "alertbridge.integers" $config }}
{{- $toml := toToml $config }}
{{- if not .Values.existingSecret }}
{{- $provided := keys (.Values.secrets | default dict) }}
{{- range .Values.env }}
{{- $provided = append $provided .name }}
{{- end }}
{{- range regexFindAll "\\$\\{[A-Za-z_][A-Za-z0-9_]*\\}" $toml -1 }}
{{- $var := trimSuffix "}" (trimPrefix "${" .) }}
{{- if not (has $var $provided) }}
{{- fail (printf "config refers to ${%s}, but neither `secrets` nor `env` sets %s (or use existingSecret)" $var $var) }}
{{- end }}
{{- end }}
{{- end }}
{{- $toml }}
{{- end }}

{{/*
Replaces whole float64 numbers by int64 in a map, in place, descending into
maps and lists. Renders nothing.
*/}}
{{- define "alertbridge.integers" -}}
{{- $map := . }}
{{- range $key, $value := $map }}
{{- if and (kindIs "float64" $value) (eq $value (floor $value)) }}
{{- $_ := set $map $key (int64 $value) }}
{{- else if kindIs "map" $value }}
{{- include "alertbridge.integers" $value }}
{{- else if kindIs "slice" $value }}
{{- $items := list }}
{{- range $value }}
{{- if and (kindIs "float64" .) (eq . (floor .)) }}
{{- $items = append $items (int64 .) }}
{{- else }}
{{- if kindIs "map" . }}{{ include "alertbridge.integers" . }}{{ end }}
{{- $items = append $items . }}
{{- end }}
{{- end }}
{{- $_ := set $map $key $items }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The image reference: repository@digest when a digest is set, else repository:tag.
*/}}
{{- define "alertbridge.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}
