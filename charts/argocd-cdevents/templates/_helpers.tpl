{{/*
Names.
*/}}
{{- define "argocd-cdevents.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "argocd-cdevents.fullname" -}}
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

{{- define "argocd-cdevents.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "argocd-cdevents.selectorLabels" -}}
app.kubernetes.io/name: {{ include "argocd-cdevents.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "argocd-cdevents.labels" -}}
helm.sh/chart: {{ include "argocd-cdevents.chart" . }}
{{ include "argocd-cdevents.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: argocd-cdevents
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "argocd-cdevents.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "argocd-cdevents.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "argocd-cdevents.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/*
The port the gateway listens on, taken from config.listen ("0.0.0.0:8080", "[::]:8080").
*/}}
{{- define "argocd-cdevents.port" -}}
{{- $port := regexFind "[0-9]+$" (toString .Values.config.listen) }}
{{- if not $port }}
{{- fail (printf "config.listen must end with a port number, e.g. \"0.0.0.0:8080\"; got %q" (toString .Values.config.listen)) }}
{{- end }}
{{- $port }}
{{- end }}

{{/*
"true" when the store is PostgreSQL: a URL Secret is given, or config.store is a postgres URL.
*/}}
{{- define "argocd-cdevents.postgres" -}}
{{- $store := toString .Values.config.store }}
{{- if or .Values.postgresql.existingSecret (hasPrefix "postgres://" $store) (hasPrefix "postgresql://" $store) }}true{{ end }}
{{- end }}

{{/*
"true" when several replicas run and so elect a leader through a Lease.
*/}}
{{- define "argocd-cdevents.leaderElection" -}}
{{- if gt (int .Values.replicaCount) 1 }}true{{ end }}
{{- end }}

{{/*
"true" when the gateway talks to the Kubernetes API (and so needs a ServiceAccount token).
*/}}
{{- define "argocd-cdevents.usesKubernetesApi" -}}
{{- if or (eq (toString .Values.config.emit.watch.kind) "kubernetes") (eq .Values.argocd.backend "kubernetes") (include "argocd-cdevents.leaderElection" .) }}true{{ end }}
{{- end }}

{{/*
Verbs on applications.argoproj.io the gateway needs, as a JSON list (empty list: none).
*/}}
{{- define "argocd-cdevents.applicationVerbs" -}}
{{- $verbs := list }}
{{- if eq (toString .Values.config.emit.watch.kind) "kubernetes" }}
{{- $verbs = concat $verbs (list "get" "list" "watch") }}
{{- end }}
{{- if eq .Values.argocd.backend "kubernetes" }}
{{- $verbs = concat $verbs (list "get" "list" "patch") }}
{{- if .Values.argocd.previewEnvironments }}
{{- $verbs = concat $verbs (list "create" "delete") }}
{{- end }}
{{- end }}
{{- $verbs | uniq | toJson }}
{{- end }}

{{/*
Namespaces whose Applications the gateway reads or patches; empty list: all (ClusterRole).
*/}}
{{- define "argocd-cdevents.applicationNamespaces" -}}
{{- $kube := default (dict) .Values.config.emit.watch.kubernetes }}
{{- default (list) $kube.namespaces | uniq | toJson }}
{{- end }}

{{/*
The config file: .Values.config, plus the Argo CD server and token variable for
emit.watch.kind=argocd when they are given through the `argocd` values.
*/}}
{{- define "argocd-cdevents.config" -}}
{{- $cfg := deepCopy .Values.config }}
{{- if eq (toString $cfg.emit.watch.kind) "argocd" }}
{{- $a := deepCopy (default (dict) $cfg.emit.watch.argocd) }}
{{- if and (not $a.server) .Values.argocd.server }}
{{- $_ := set $a "server" .Values.argocd.server }}
{{- end }}
{{- if and (not $a.tokenEnv) (not $a.tokenFile) .Values.argocd.existingSecret }}
{{- $_ := set $a "tokenEnv" "ARGOCD_AUTH_TOKEN" }}
{{- end }}
{{- $_ := set $cfg.emit.watch "argocd" $a }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/*
Cross-field checks the JSON schema cannot express. Included by the Deployment.
*/}}
{{- define "argocd-cdevents.validate" -}}
{{- $store := toString .Values.config.store }}
{{- if and (gt (int .Values.replicaCount) 1) (not (include "argocd-cdevents.postgres" .)) }}
{{- fail (printf "replicaCount is %d but the store is SQLite (%s): SQLite supports one replica only. Set postgresql.existingSecret to a Secret holding a PostgreSQL URL, or set replicaCount to 1." (int .Values.replicaCount) $store) }}
{{- end }}
{{- if eq (toString .Values.config.emit.watch.kind) "argocd" }}
{{- $a := default (dict) .Values.config.emit.watch.argocd }}
{{- if not (or $a.server .Values.argocd.server) }}
{{- fail "config.emit.watch.kind is argocd but no Argo CD server is set: set argocd.server (or config.emit.watch.argocd.server)." }}
{{- end }}
{{- if not (or $a.tokenEnv $a.tokenFile .Values.argocd.existingSecret) }}
{{- fail "config.emit.watch.kind is argocd but no Argo CD token is given: set argocd.existingSecret (or config.emit.watch.argocd.tokenEnv / tokenFile)." }}
{{- end }}
{{- end }}
{{- $react := default (dict) .Values.config.react }}
{{- $reactArgocd := default (dict) $react.argocd }}
{{- if and $reactArgocd.kind (ne (toString $reactArgocd.kind) .Values.argocd.backend) }}
{{- fail (printf "config.react.argocd.kind is %q but argocd.backend is %q: set both to the same backend (argocd.backend decides the RBAC the chart grants)." (toString $reactArgocd.kind) .Values.argocd.backend) }}
{{- end }}
{{- if and .Values.argocd.previewEnvironments (ne .Values.argocd.backend "kubernetes") }}
{{- fail "argocd.previewEnvironments only changes Kubernetes RBAC and needs argocd.backend=kubernetes; with the rest backend grant create/delete in argocd-rbac-cm instead (deploy/argocd/)." }}
{{- end }}
{{- if and .Values.policies.existingConfigMap .Values.policies.files }}
{{- fail "set either policies.files or policies.existingConfigMap, not both." }}
{{- end }}
{{- end }}
