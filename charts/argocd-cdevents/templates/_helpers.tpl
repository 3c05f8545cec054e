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
"true" when several replicas run and so elect a leader through a Lease: the config gets
leaderElection (see "argocd-cdevents.config") and the ServiceAccount a Role on Leases.
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
Where the chart mounts the policy files, and the ConfigMap mounted there ("" when none).
*/}}
{{- define "argocd-cdevents.policiesDir" -}}
/etc/argocd-cdevents/policies
{{- end }}

{{- define "argocd-cdevents.policiesConfigMap" -}}
{{- if .Values.policies.existingConfigMap }}
{{- .Values.policies.existingConfigMap }}
{{- else if .Values.policies.files }}
{{- printf "%s-policies" (include "argocd-cdevents.fullname" .) }}
{{- end }}
{{- end }}

{{/*
HTTPS in the gateway: where the chart mounts tls.existingSecret and tls.clientCa.existingSecret,
the client CA file the gateway reads ("" when none), "true" when the gateway serves HTTPS
(tls.enabled, or a config.tls of your own), and the name of the port (https or http).
*/}}
{{- define "argocd-cdevents.tlsDir" -}}
/etc/argocd-cdevents/tls
{{- end }}

{{- define "argocd-cdevents.clientCaDir" -}}
/etc/argocd-cdevents/tls-client-ca
{{- end }}

{{- define "argocd-cdevents.clientCaFile" -}}
{{- $ca := default (dict) .Values.tls.clientCa }}
{{- if and .Values.tls.enabled $ca.existingSecret }}
{{- $dir := include "argocd-cdevents.clientCaDir" . }}
{{- if eq $ca.existingSecret .Values.tls.existingSecret }}
{{- $dir = include "argocd-cdevents.tlsDir" . }}
{{- end }}
{{- printf "%s/%s" $dir (default "ca.crt" $ca.key) }}
{{- end }}
{{- end }}

{{- define "argocd-cdevents.https" -}}
{{- if or .Values.tls.enabled .Values.config.tls }}true{{ end }}
{{- end }}

{{- define "argocd-cdevents.portName" -}}
{{- if include "argocd-cdevents.https" . }}https{{ else }}http{{ end }}
{{- end }}

{{/*
A probe from the values (dict "probe" <probe> "root" $). With HTTPS, an httpGet probe gets
scheme HTTPS (the port speaks nothing else), and the port named http becomes https.
*/}}
{{- define "argocd-cdevents.probe" -}}
{{- $probe := deepCopy .probe }}
{{- if and (include "argocd-cdevents.https" .root) (kindIs "map" $probe.httpGet) }}
{{- $_ := set $probe.httpGet "scheme" "HTTPS" }}
{{- if eq (toString $probe.httpGet.port) "http" }}
{{- $_ := set $probe.httpGet "port" "https" }}
{{- end }}
{{- end }}
{{- toYaml $probe }}
{{- end }}

{{/*
"true" when config.react is given (an empty map counts: the chart fills in what it can).
*/}}
{{- define "argocd-cdevents.react" -}}
{{- if and (hasKey .Values.config "react") (kindIs "map" .Values.config.react) }}true{{ end }}
{{- end }}

{{/*
An Argo CD server address as the gateway's config wants it: an http(s) URL. A bare
host:port (as ARGOCD_SERVER and the argocd CLI take it) gets https://, as the gateway does
for ARGOCD_SERVER.
*/}}
{{- define "argocd-cdevents.serverUrl" -}}
{{- if contains "://" . }}{{ . }}{{ else }}{{ printf "https://%s" . }}{{ end }}
{{- end }}

{{/*
The config file: .Values.config, plus
- for emit.watch.kind=argocd, the Argo CD server and token variable when they are given
  through the `argocd` values;
- for the react flow (config.react), react.policies (the directory the chart mounts the
  policies in) and react.argocd.backend (argocd.backend) when they are not set;
- with tls.enabled, tls: the files of the mounted Secrets;
- with replicaCount > 1, leaderElection: the Lease <fullname>-leader in the release
  namespace (duration and grace from the leaderElection values when given).
*/}}
{{- define "argocd-cdevents.config" -}}
{{- $cfg := deepCopy .Values.config }}
{{- if .Values.tls.enabled }}
{{- $dir := include "argocd-cdevents.tlsDir" . }}
{{- $t := dict "certFile" (printf "%s/tls.crt" $dir) "keyFile" (printf "%s/tls.key" $dir) }}
{{- with include "argocd-cdevents.clientCaFile" . }}
{{- $_ := set $t "clientCaFile" . }}
{{- end }}
{{- if .Values.tls.requireClientCertificate }}
{{- $_ := set $t "requireClientCertificate" true }}
{{- end }}
{{- with .Values.tls.reloadInterval }}
{{- $_ := set $t "reloadInterval" . }}
{{- end }}
{{- $_ := set $cfg "tls" $t }}
{{- end }}
{{- if eq (toString $cfg.emit.watch.kind) "argocd" }}
{{- $a := deepCopy (default (dict) $cfg.emit.watch.argocd) }}
{{- if and (not $a.server) .Values.argocd.server }}
{{- $_ := set $a "server" (include "argocd-cdevents.serverUrl" .Values.argocd.server) }}
{{- end }}
{{- if and (not $a.tokenEnv) (not $a.tokenFile) .Values.argocd.existingSecret }}
{{- $_ := set $a "tokenEnv" "ARGOCD_AUTH_TOKEN" }}
{{- end }}
{{- $_ := set $cfg.emit.watch "argocd" $a }}
{{- end }}
{{- if include "argocd-cdevents.react" . }}
{{- $r := $cfg.react }}
{{- if and (not $r.policies) (include "argocd-cdevents.policiesConfigMap" .) }}
{{- $_ := set $r "policies" (include "argocd-cdevents.policiesDir" .) }}
{{- end }}
{{- $ra := default (dict) $r.argocd }}
{{- if not $ra.backend }}
{{- $_ := set $ra "backend" .Values.argocd.backend }}
{{- end }}
{{- $_ := set $r "argocd" $ra }}
{{- end }}
{{- if include "argocd-cdevents.leaderElection" . }}
{{- $le := dict "namespace" .Release.Namespace "lease" (printf "%s-leader" (include "argocd-cdevents.fullname" .)) }}
{{- $v := default (dict) .Values.leaderElection }}
{{- with $v.duration }}
{{- $_ := set $le "duration" . }}
{{- end }}
{{- with $v.grace }}
{{- $_ := set $le "grace" . }}
{{- end }}
{{- $_ := set $cfg "leaderElection" $le }}
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
{{- if and $reactArgocd.backend (ne (toString $reactArgocd.backend) .Values.argocd.backend) }}
{{- fail (printf "config.react.argocd.backend is %q but argocd.backend is %q: set both to the same backend, or leave config.react.argocd.backend out (the chart copies argocd.backend; argocd.backend decides the RBAC the chart grants)." (toString $reactArgocd.backend) .Values.argocd.backend) }}
{{- end }}
{{- if include "argocd-cdevents.react" . }}
{{- $dir := include "argocd-cdevents.policiesDir" . }}
{{- if include "argocd-cdevents.policiesConfigMap" . }}
{{- if and $react.policies (ne (toString $react.policies) $dir) }}
{{- fail (printf "config.react.policies is %q but the chart mounts the policies (policies.files / policies.existingConfigMap) at %s: leave config.react.policies out (the chart sets it) or set it to %s." (toString $react.policies) $dir $dir) }}
{{- end }}
{{- else if not $react.policies }}
{{- fail (printf "config.react is set but there are no policies: set policies.files or policies.existingConfigMap (mounted at %s), or config.react.policies to a directory you mount with extraVolumes." $dir) }}
{{- end }}
{{- if and $react.allowUnauthenticated (not (regexMatch "^(127\\.[0-9.]+|\\[::1\\]):[0-9]+$" (toString .Values.config.listen))) }}
{{- fail (printf "config.react.allowUnauthenticated is true but config.listen is %q: the gateway allows it on a loopback address only (local trials); give the clients credentials (config.react.clients) instead." (toString .Values.config.listen)) }}
{{- end }}
{{- if ne .Values.argocd.backend "kubernetes" }}
{{- if not (or $reactArgocd.server .Values.argocd.server) }}
{{- fail "config.react is set with the rest backend but no Argo CD server is set: set argocd.server (or config.react.argocd.server)." }}
{{- end }}
{{- if not (or $reactArgocd.tokenEnv $reactArgocd.tokenFile .Values.argocd.existingSecret) }}
{{- fail "config.react is set with the rest backend but no Argo CD token is given: set argocd.existingSecret (or config.react.argocd.tokenEnv / tokenFile)." }}
{{- end }}
{{- end }}
{{- end }}
{{- if and .Values.argocd.previewEnvironments (ne .Values.argocd.backend "kubernetes") }}
{{- fail "argocd.previewEnvironments only changes Kubernetes RBAC and needs argocd.backend=kubernetes; with the rest backend grant create/delete in argocd-rbac-cm instead (deploy/argocd/)." }}
{{- end }}
{{- if and .Values.policies.existingConfigMap .Values.policies.files }}
{{- fail "set either policies.files or policies.existingConfigMap, not both." }}
{{- end }}
{{- $tls := .Values.tls }}
{{- $clientCa := default (dict) $tls.clientCa }}
{{- if $tls.enabled }}
{{- if not $tls.existingSecret }}
{{- fail "tls.enabled is true but tls.existingSecret is empty: name a kubernetes.io/tls Secret holding tls.crt and tls.key (e.g. the secretName of a cert-manager Certificate), or set tls.enabled to false." }}
{{- end }}
{{- if .Values.config.tls }}
{{- fail "tls.enabled is true and config.tls is set: use one. tls.enabled mounts tls.existingSecret and writes config.tls itself; config.tls is for certificate files you mount yourself (extraVolumes)." }}
{{- end }}
{{- else if or $tls.requireClientCertificate $clientCa.existingSecret }}
{{- fail "tls.requireClientCertificate and tls.clientCa.existingSecret need tls.enabled: client certificates are checked by the gateway's own TLS. Set tls.enabled and tls.existingSecret, or leave them out." }}
{{- end }}
{{- if and $tls.requireClientCertificate (not $clientCa.existingSecret) }}
{{- fail "tls.requireClientCertificate is true but tls.clientCa.existingSecret is empty: name the Secret holding the CA bundle that client certificates are verified against (its key: tls.clientCa.key, default ca.crt)." }}
{{- end }}
{{- $ownTls := default (dict) .Values.config.tls }}
{{- range $i, $c := default (list) $react.clients }}
{{- if and (kindIs "map" $c) $c.certificate (not (or (include "argocd-cdevents.clientCaFile" $) $ownTls.clientCaFile)) }}
{{- fail (printf "config.react.clients[%d] (%s) authenticates by client certificate, but no client CA is set: set tls.enabled, tls.existingSecret and tls.clientCa.existingSecret (the CA bundle client certificates are verified against)." $i (toString $c.name)) }}
{{- end }}
{{- end }}
{{- end }}
