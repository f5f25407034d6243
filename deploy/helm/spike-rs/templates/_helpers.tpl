{{/*
Helpers shared by every template. Component helpers take a dict:
  (dict "root" $ "component" "nexus")   component: nexus | keeper | bootstrap
*/}}

{{/* Name prefix of every object: fullnameOverride, else the release name. */}}
{{- define "spike-rs.prefix" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/*
Object name of a component: "<prefix>-spike-<component>" like SPIKE's charts, or
"<prefix>-<component>" when the prefix already contains "spike" (release "spike":
spike-nexus, spike-keeper-0, ...). At most 52 characters, so that StatefulSet pod names and
revision labels fit in 63.
*/}}
{{- define "spike-rs.componentName" -}}
{{- $prefix := include "spike-rs.prefix" .root -}}
{{- if contains "spike" $prefix -}}
{{- printf "%s-%s" $prefix .component | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-spike-%s" $prefix .component | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "spike-rs.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride -}}
{{- end -}}

{{- define "spike-rs.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels that select a component's pods (immutable on StatefulSets: keep them stable). */}}
{{- define "spike-rs.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Labels of every object of a component. */}}
{{- define "spike-rs.labels" -}}
helm.sh/chart: {{ include "spike-rs.chart" .root }}
{{ include "spike-rs.selectorLabels" . }}
app.kubernetes.io/part-of: spike
{{- with .root.Chart.AppVersion }}
app.kubernetes.io/version: {{ . | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Extra pod labels with the names SPIRE's charts select SPIKE pods by (release,
release-namespace, component), so the SPIKE ClusterSPIFFEIDs of SPIRE's chart also match
when this chart is installed under SPIRE's release name and namespace.
*/}}
{{- define "spike-rs.spikePodLabels" -}}
release: {{ .root.Release.Name }}
release-namespace: {{ include "spike-rs.namespace" .root }}
component: spike-{{ .component }}
{{- end -}}

{{- define "spike-rs.trustDomain" -}}
{{- $global := .Values.global | default dict -}}
{{- .Values.trustDomain | default (dig "spire" "trustDomain" "" $global) | default "example.org" -}}
{{- end -}}

{{- define "spike-rs.clusterDomain" -}}
{{- $global := .Values.global | default dict -}}
{{- .Values.clusterDomain | default (dig "k8s" "clusterDomain" "" $global) | default "cluster.local" -}}
{{- end -}}

{{/* Comma-separated trust roots: (dict "root" $ "list" .Values...trustRoot.x) */}}
{{- define "spike-rs.trustRoots" -}}
{{- if .list -}}
{{- join "," .list -}}
{{- else -}}
{{- include "spike-rs.trustDomain" .root -}}
{{- end -}}
{{- end -}}

{{/* Image reference: (dict "root" $ "image" .image) */}}
{{- define "spike-rs.image" -}}
{{- $tag := .image.tag | default .root.Chart.AppVersion | toString -}}
{{- if .image.registry -}}
{{- printf "%s/%s:%s" .image.registry .image.repository $tag -}}
{{- else -}}
{{- printf "%s:%s" .image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "spike-rs.imagePullSecrets" -}}
{{- $global := .Values.global | default dict -}}
{{- with (.Values.imagePullSecrets | default (get $global "imagePullSecrets")) -}}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end -}}
{{- end -}}

{{/* Service account of a component: (dict "root" $ "component" "nexus" "sa" .serviceAccount) */}}
{{- define "spike-rs.serviceAccountName" -}}
{{- if .sa.create -}}
{{- default (include "spike-rs.componentName" .) .sa.name -}}
{{- else -}}
{{- default "default" .sa.name -}}
{{- end -}}
{{- end -}}

{{/* Headless Service of the Keepers, which gives each Keeper pod a stable DNS name. */}}
{{- define "spike-rs.keeperHeadless" -}}
{{- printf "%s-headless" (include "spike-rs.componentName" (dict "root" . "component" "keeper")) -}}
{{- end -}}

{{/*
SPIKE_NEXUS_KEEPER_PEERS: spike-nexus.keeperPeers, else one URL per Keeper pod in ordinal
order (pod 0 holds share 1, pod 1 share 2, ...), by the pod's stable DNS name.
*/}}
{{- define "spike-rs.keeperPeers" -}}
{{- $nexus := index .Values "spike-nexus" -}}
{{- $keeper := index .Values "spike-keeper" -}}
{{- if $nexus.keeperPeers -}}
{{- join "," $nexus.keeperPeers -}}
{{- else -}}
{{- $sts := include "spike-rs.componentName" (dict "root" . "component" "keeper") -}}
{{- $svc := include "spike-rs.keeperHeadless" . -}}
{{- $ns := include "spike-rs.namespace" . -}}
{{- $domain := include "spike-rs.clusterDomain" . -}}
{{- $urls := list -}}
{{- range $i := until (int $keeper.replicas) -}}
{{- $urls = append $urls (printf "https://%s-%d.%s.%s.svc.%s:%d" $sts $i $svc $ns $domain (int $keeper.containerPort)) -}}
{{- end -}}
{{- join "," $urls -}}
{{- end -}}
{{- end -}}

{{/* SPIKE_NEXUS_API_URL for the Bootstrap Job: the Nexus Service. */}}
{{- define "spike-rs.nexusURL" -}}
{{- $nexus := index .Values "spike-nexus" -}}
{{- printf "https://%s.%s.svc.%s:%d" (include "spike-rs.componentName" (dict "root" . "component" "nexus")) (include "spike-rs.namespace" .) (include "spike-rs.clusterDomain" .) (int $nexus.service.port) -}}
{{- end -}}

{{/* Workload API socket as SPIFFE_ENDPOINT_SOCKET wants it: (component values) */}}
{{- define "spike-rs.endpointSocket" -}}
{{- printf "unix://%s/%s" (.workloadAPIMountPath | trimSuffix "/") .agentSocketName -}}
{{- end -}}

{{/* The Workload API volume, from the SPIFFE CSI driver: (component values) */}}
{{- define "spike-rs.workloadAPIVolume" -}}
- name: spiffe-workload-api
  csi:
    driver: {{ .csiDriverName | quote }}
    readOnly: true
{{- end -}}

{{- define "spike-rs.workloadAPIMount" -}}
- name: spiffe-workload-api
  mountPath: {{ .workloadAPIMountPath }}
  readOnly: true
{{- end -}}

{{/* tcpSocket probes: (dict "probe" .startupProbe "port" "https") */}}
{{- define "spike-rs.tcpProbe" -}}
tcpSocket:
  port: {{ .port }}
{{- with .probe }}
{{- if hasKey . "initialDelaySeconds" }}
initialDelaySeconds: {{ .initialDelaySeconds }}
{{- end }}
periodSeconds: {{ .periodSeconds }}
timeoutSeconds: {{ .timeoutSeconds }}
failureThreshold: {{ .failureThreshold }}
{{- if hasKey . "successThreshold" }}
successThreshold: {{ .successThreshold }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Refuse settings spike-rs would refuse at start-up, with the reason. */}}
{{- define "spike-rs.validate" -}}
{{- $nexus := index .Values "spike-nexus" -}}
{{- $keeper := index .Values "spike-keeper" -}}
{{- $store := $nexus.backendStore | toString -}}
{{- if has $store (list "sqlite" "lite") -}}
{{- fail (printf "spike-nexus.backendStore=%s: SPIKE's %s store is SPIKE-specific and spike-rs does not read it; use sled (one replica) or postgres" $store $store) -}}
{{- end -}}
{{- if not (has $store (list "sled" "memory" "postgres")) -}}
{{- fail (printf "spike-nexus.backendStore=%s: must be one of sled, memory, postgres" $store) -}}
{{- end -}}
{{- if and (ne $store "postgres") (gt (int $nexus.replicas) 1) -}}
{{- fail (printf "spike-nexus.replicas=%d with backendStore=%s: only postgres shares state between Nexus replicas" (int $nexus.replicas) $store) -}}
{{- end -}}
{{- if and (eq $store "postgres") (not $nexus.postgres.dsnSecret.name) -}}
{{- fail "spike-nexus.backendStore=postgres needs spike-nexus.postgres.dsnSecret.name (a Secret holding SPIKE_NEXUS_POSTGRES_DSN)" -}}
{{- end -}}
{{- if and (eq $store "postgres") (eq ($nexus.postgres.tls | toString) "verify-full") (not $nexus.postgres.caSecret.name) -}}
{{- fail "spike-nexus.postgres.tls=verify-full needs spike-nexus.postgres.caSecret.name (the database server's PEM CA)" -}}
{{- end -}}
{{- if and (eq $store "sled") (not (has ($nexus.persistence.type | toString) (list "pvc" "hostPath" "emptyDir"))) -}}
{{- fail "spike-nexus.persistence.type must be one of pvc, hostPath, emptyDir" -}}
{{- end -}}
{{- $shares := int $nexus.shamir.shares -}}
{{- $threshold := int $nexus.shamir.threshold -}}
{{- if or (lt $threshold 1) (gt $threshold $shares) -}}
{{- fail (printf "spike-nexus.shamir.threshold=%d must be between 1 and shares=%d" $threshold $shares) -}}
{{- end -}}
{{- if and (eq $threshold 1) (ne $shares 1) -}}
{{- fail "spike-nexus.shamir.threshold=1 is only allowed with shares=1 (one share would reveal the root key)" -}}
{{- end -}}
{{- $peers := len (splitList "," (include "spike-rs.keeperPeers" .)) -}}
{{- if ne $peers $shares -}}
{{- fail (printf "spike-nexus.shamir.shares=%d but there are %d Keeper URLs (spike-keeper.replicas or spike-nexus.keeperPeers): Keeper n holds share n, so give exactly one Keeper per share" $shares $peers) -}}
{{- end -}}
{{- end -}}
