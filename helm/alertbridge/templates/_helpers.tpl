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
config.toml, rendered from .Values.config (its store URL from
alertbridge.storeUrl) with Helm's toToml. Numbers in values
files reach templates as floats, which toToml would write as 1.048576e+06;
alertbridge.integers turns whole ones back into integers first (on a copy).
Fails when the TOML refers to a ${VAR} (without a :-default) that neither the
chart's Secret, `env` nor store.existingSecret provides, instead of letting the pod crash-loop.
*/}}
{{- define "alertbridge.configToml" -}}
{{- $config := deepCopy .Values.config }}
{{- $_ := set $config.store "url" (include "alertbridge.storeUrl" .) }}
{{- if and (include "alertbridge.postgres" .) (not (hasKey $config.store "replica")) }}
{{- /* Each pod names its leases by its own name (the downward API's POD_NAME). */}}
{{- $_ := set $config.store "replica" "${POD_NAME}" }}
{{- end }}
{{- include "alertbridge.integers" $config }}
{{- $toml := toToml $config }}
{{- if not .Values.existingSecret }}
{{- $provided := keys (.Values.secrets | default dict) }}
{{- if .Values.store.existingSecret }}
{{- $provided = append $provided (include "alertbridge.storeEnvName" .) }}
{{- end }}
{{- if include "alertbridge.postgres" . }}
{{- $provided = append $provided "POD_NAME" }}
{{- end }}
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

{{/*
Whether alertbridge stores in PostgreSQL: "true" or "". store.url and
store.existingSecret name a PostgreSQL database (a Secret holding a SQLite URL
would make no sense); otherwise config.store.url decides.
*/}}
{{- define "alertbridge.postgres" -}}
{{- if or .Values.store.url .Values.store.existingSecret (regexMatch "^postgres(ql)?://" (toString .Values.config.store.url)) }}true{{ end }}
{{- end }}

{{/*
The environment variable store.existingSecret's key reaches alertbridge as:
the password when store.url is set, else the whole URL.
*/}}
{{- define "alertbridge.storeEnvName" -}}
{{- ternary "ALERTBRIDGE_DB_PASSWORD" "ALERTBRIDGE_DB_URL" (not (empty .Values.store.url)) }}
{{- end }}

{{/*
The store URL written into config.toml. With store.existingSecret it refers to
the Secret's value as ${VAR} (the password spliced in after store.url's user,
or the whole URL), so the ConfigMap never holds the password.
*/}}
{{- define "alertbridge.storeUrl" -}}
{{- $store := .Values.store }}
{{- $var := include "alertbridge.storeEnvName" . }}
{{- if and $store.existingSecret $store.url }}
{{- if not (regexMatch "^postgres(ql)?://[^:@/]+@" $store.url) }}
{{- fail "store.url must name the user and no password (postgresql://USER@HOST:5432/DATABASE): store.existingSecret provides the password" }}
{{- end }}
{{- regexReplaceAll "^(postgres(?:ql)?://[^:@/]+)@" $store.url (printf "${1}:$${%s}@" $var) }}
{{- else if $store.existingSecret }}
{{- printf "${%s}" $var }}
{{- else }}
{{- $store.url | default .Values.config.store.url }}
{{- end }}
{{- end }}

{{/*
The container's variables for the store, as a list of EnvVar: store.existingSecret's
key, and on PostgreSQL the pod's name (config.store.replica, the name on its
leases, refers to it). Empty for SQLite without a Secret.
*/}}
{{- define "alertbridge.storeEnv" -}}
{{- with .Values.store.existingSecret }}
{{- $key := $.Values.store.existingSecretKey | default (ternary "password" "uri" (not (empty $.Values.store.url))) }}
- name: {{ include "alertbridge.storeEnvName" $ }}
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $key }}
{{- end }}
{{- if include "alertbridge.postgres" . }}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- end }}
{{- end }}

{{/*
Refuses values that cannot work: several replicas on SQLite (one writer), and
a store URL that would put a password into the ConfigMap. Renders nothing.
*/}}
{{- define "alertbridge.checks" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not (include "alertbridge.postgres" .)) }}
{{- fail (printf "replicaCount=%d needs a PostgreSQL store: SQLite takes a single writer. Set store.url (postgresql://USER@HOST:5432/DATABASE) and store.existingSecret for its password, or store.existingSecret alone for a Secret holding the whole URL; see \"Running several replicas\" in alertbridge's README" (int .Values.replicaCount)) }}
{{- end }}
{{- $url := include "alertbridge.storeUrl" . }}
{{- if and (regexMatch "^[a-z]+://[^/@:]*:[^/@]*@" $url) (not (regexMatch "^[a-z]+://[^/@:]*:\\$\\{[A-Za-z_][A-Za-z0-9_]*\\}@" $url)) }}
{{- fail "the store URL holds a password, which would land in the ConfigMap: put it in a Secret (store.existingSecret) and leave it out of store.url and config.store.url" }}
{{- end }}
{{- end }}

{{/*
The pod's affinity: `affinity`, plus (with several replicas, unless
`podAntiAffinity` is none or `affinity` has its own) pod anti-affinity by
hostname, so a node drain or failure takes one replica rather than all.
*/}}
{{- define "alertbridge.affinity" -}}
{{- $affinity := deepCopy (.Values.affinity | default dict) }}
{{- if and (gt (int .Values.replicaCount) 1) (ne .Values.podAntiAffinity "none") (not (hasKey $affinity "podAntiAffinity")) }}
{{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" (include "alertbridge.selectorLabels" . | fromYaml)) }}
{{- if eq .Values.podAntiAffinity "hard" }}
{{- $_ := set $affinity "podAntiAffinity" (dict "requiredDuringSchedulingIgnoredDuringExecution" (list $term)) }}
{{- else }}
{{- $_ := set $affinity "podAntiAffinity" (dict "preferredDuringSchedulingIgnoredDuringExecution" (list (dict "weight" 100 "podAffinityTerm" $term))) }}
{{- end }}
{{- end }}
{{- with $affinity }}
{{- toYaml . }}
{{- end }}
{{- end }}
