{{/*
Named templates. The sidecar ones are public: a chart that lists sidetrace as
a dependency calls them to add the recorder to its own pods (README.md). They
take the root context ("."), and find sidetrace's values at .Values (inside
this chart) or at .Values.sidetrace (in a parent chart). A parent that gave
the dependency an alias passes the subchart's context: .Subcharts.ALIAS.

  sidetrace.sidecar           initContainers entries: the CA bundle writer and
                              the sidecar itself (restartPolicy: Always)
  sidetrace.volumes           volumes entries used by the sidecar and the agent
  sidetrace.agentEnv          env entries for the agent: HTTPS_PROXY & co., CA trust
  sidetrace.agentVolumeMounts volumeMounts entries for the agent (the CA files)
  sidetrace.podLabels         the label the NetworkPolicy and the Service select on
*/}}

{{/*
Resolves the calling context: sets "root" (the context), "v" (sidetrace's
values) and "appVersion" (sidetrace's chart appVersion) on .out. Called for
its side effect:
  {{- $c := dict }}{{- $_ := include "sidetrace.resolve" (dict "in" . "out" $c) }}
A named template can only return text; filling a dict hands back the objects
themselves, with their types intact.
*/}}
{{- define "sidetrace.resolve" -}}
{{- $in := .in -}}
{{- $_ := set .out "root" $in -}}
{{- if hasKey $in.Values "sidetrace" -}}
{{- /* A parent chart's context, the dependency named sidetrace (this chart's
  own values never have that key: the schema forbids it). */ -}}
{{- $_ := set .out "v" $in.Values.sidetrace -}}
{{- $_ := set .out "appVersion" "" -}}
{{- $subcharts := $in.Subcharts | default dict -}}
{{- if hasKey $subcharts "sidetrace" -}}
{{- $_ := set .out "appVersion" (index $subcharts "sidetrace").Chart.AppVersion -}}
{{- end -}}
{{- else -}}
{{- /* This chart's own context, or a parent's .Subcharts.ALIAS. */ -}}
{{- $_ := required "sidetrace templates: no sidetrace values here; in a chart whose sidetrace dependency has an alias, pass .Subcharts.ALIAS instead of ." $in.Values.sidecar -}}
{{- $_ := set .out "v" $in.Values -}}
{{- $_ := set .out "appVersion" $in.Chart.AppVersion -}}
{{- end -}}
{{- end -}}

{{/* Resource name prefix: the same inside this chart and from a parent chart. */}}
{{- define "sidetrace.fullname" -}}
{{- $c := dict -}}{{- $_ := include "sidetrace.resolve" (dict "in" . "out" $c) -}}
{{- $release := $c.root.Release.Name -}}
{{- if $c.v.fullnameOverride -}}
{{- $c.v.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default "sidetrace" $c.v.nameOverride -}}
{{- if contains $name $release -}}
{{- $release | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" $release $name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "sidetrace.configMapName" -}}
{{- include "sidetrace.fullname" . -}}-config
{{- end -}}

{{- define "sidetrace.keysSecretName" -}}
{{- $c := dict -}}{{- $_ := include "sidetrace.resolve" (dict "in" . "out" $c) -}}
{{- if $c.v.keys.existingSecret -}}
{{- $c.v.keys.existingSecret -}}
{{- else -}}
{{- include "sidetrace.fullname" . -}}-keys
{{- end -}}
{{- end -}}

{{/* The image; without image.tag, the sidetrace chart's appVersion. */}}
{{- define "sidetrace.image" -}}
{{- $c := dict -}}{{- $_ := include "sidetrace.resolve" (dict "in" . "out" $c) -}}
{{- $tag := $c.v.image.tag | default $c.appVersion -}}
{{- if $c.v.image.digest -}}
{{- printf "%s@%s" $c.v.image.repository $c.v.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $c.v.image.repository (required "image.tag: set the sidetrace image tag" $tag) -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object this chart creates. */}}
{{- define "sidetrace.labels" -}}
app.kubernetes.io/name: sidetrace
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/*
The label a recorded pod carries; the Service and the NetworkPolicy select on
it. Put it on every pod template that includes the sidecar. Usage:

  labels:
    {{- include "sidetrace.podLabels" . | nindent 4 }}
*/}}
{{- define "sidetrace.podLabels" -}}
sidetrace.dev/recorder: {{ include "sidetrace.fullname" . }}
{{- end -}}

{{/* Fixed paths inside the sidecar. */}}
{{- define "sidetrace.paths.configDir" -}}/etc/sidetrace/config{{- end -}}
{{- define "sidetrace.paths.keys" -}}/etc/sidetrace/keys{{- end -}}
{{- define "sidetrace.paths.data" -}}/var/lib/sidetrace{{- end -}}
{{- define "sidetrace.paths.tokenDir" -}}/var/run/secrets/sidetrace{{- end -}}
{{/* Where the agent finds the CA certificate and the bundle. */}}
{{- define "sidetrace.paths.caDir" -}}/etc/sidetrace/ca{{- end -}}
{{- define "sidetrace.paths.trust" -}}/etc/sidetrace/trust{{- end -}}

{{/* The hardened security context of both sidetrace containers. */}}
{{- define "sidetrace.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
initContainers entries. Usage, in a pod spec of your chart:

  initContainers:
    {{- include "sidetrace.sidecar" . | nindent 4 }}

Put them before any init container that needs the network: init containers
start in order, and this sidecar is ready (startupProbe) before the next one
starts.
*/}}
{{- define "sidetrace.sidecar" -}}
{{- $c := dict -}}{{- $_ := include "sidetrace.resolve" (dict "in" . "out" $c) -}}
{{- $v := $c.v -}}
{{- if $v.transparentRedirect.enabled -}}
{{- fail "transparentRedirect.enabled: the transparent-redirect mode (an init container whose iptables rules send the agent's traffic to sidetrace) is not implemented yet; leave it false" -}}
{{- end -}}
{{- $image := include "sidetrace.image" . -}}
{{- $keys := include "sidetrace.paths.keys" . -}}
{{- $data := include "sidetrace.paths.data" . -}}
# TRANSPARENT REDIRECT (placeholder, not implemented yet): a later release adds
# here, first, an init container whose iptables rules send the agent's outbound
# traffic to sidetrace (transparentRedirect.enabled).
{{- if $v.agentEnv.caBundle }}
# Writes the system roots plus sidetrace's CA as one bundle for the agent's
# SSL_CERT_FILE / REQUESTS_CA_BUNDLE; runs to completion before the sidecar.
- name: sidetrace-ca-bundle
  image: {{ $image }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  args: ["ca", "bundle", "--out", "{{ include "sidetrace.paths.trust" . }}/ca-bundle.pem"]
  env:
    - name: SIDETRACE_CA_DIR
      value: {{ $keys }}
  resources:
    requests:
      cpu: 10m
      memory: 16Mi
    limits:
      memory: 64Mi
  securityContext:
    {{- include "sidetrace.containerSecurityContext" . | nindent 4 }}
  volumeMounts:
    - name: sidetrace-keys
      mountPath: {{ $keys }}
      readOnly: true
    - name: sidetrace-trust
      mountPath: {{ include "sidetrace.paths.trust" . }}
{{- end }}
# The recorder, as a native sidecar: it is ready (startupProbe) before the
# agent starts and keeps recording until the agent has exited.
- name: sidetrace
  image: {{ $image }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  restartPolicy: Always
  args: ["proxy"]
  env:
    - name: SIDETRACE_CONFIG
      value: {{ include "sidetrace.paths.configDir" . }}/sidetrace.toml
    # The same paths as in the config, so that `kubectl exec ... -- sidetrace
    # show` and `sidetrace journal verify` find them without flags.
    - name: SIDETRACE_JOURNAL
      value: {{ $data }}/journal.db
    - name: SIDETRACE_SIGNING_KEY
      value: {{ $keys }}/signing-key.pem
    - name: SIDETRACE_CA_DIR
      value: {{ $keys }}
    - name: SIDETRACE_LOG_FORMAT
      value: {{ $v.sidecar.logFormat | quote }}
    - name: SIDETRACE_LOG_LEVEL
      value: {{ $v.sidecar.logLevel | quote }}
    # Sponsor and change id from the pod's annotations (empty when absent).
    - name: SIDETRACE_SPONSOR
      valueFrom:
        fieldRef:
          fieldPath: metadata.annotations['{{ $v.sponsor.annotation }}']
    - name: SIDETRACE_CHANGE_ID
      valueFrom:
        fieldRef:
          fieldPath: metadata.annotations['{{ $v.correlation.changeIdAnnotation }}']
    # k8s.pod.name, k8s.namespace.name and k8s.node.name on exported spans.
    - name: POD_NAME
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    - name: POD_NAMESPACE
      valueFrom:
        fieldRef:
          fieldPath: metadata.namespace
    - name: NODE_NAME
      valueFrom:
        fieldRef:
          fieldPath: spec.nodeName
    {{- with $v.sidecar.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    - name: sidetrace-admin
      containerPort: {{ int $v.sidecar.adminPort }}
      protocol: TCP
  startupProbe:
    httpGet:
      path: /readyz
      port: sidetrace-admin
    periodSeconds: 1
    failureThreshold: 60
  livenessProbe:
    httpGet:
      path: /healthz
      port: sidetrace-admin
    periodSeconds: 10
    failureThreshold: 3
  readinessProbe:
    httpGet:
      path: /readyz
      port: sidetrace-admin
    periodSeconds: 5
    failureThreshold: 2
  resources:
    {{- toYaml $v.sidecar.resources | nindent 4 }}
  securityContext:
    {{- include "sidetrace.containerSecurityContext" . | nindent 4 }}
  volumeMounts:
    - name: sidetrace-config
      mountPath: {{ include "sidetrace.paths.configDir" . }}
      readOnly: true
    - name: sidetrace-keys
      mountPath: {{ $keys }}
      readOnly: true
    - name: sidetrace-data
      mountPath: {{ $data }}
      {{- if and $v.persistence.enabled $v.persistence.perPodSubdirectory }}
      subPathExpr: $(POD_NAME)
      {{- end }}
    - name: sidetrace-tmp
      mountPath: /tmp
    {{- if $v.sponsor.projectedToken.enabled }}
    - name: sidetrace-token
      mountPath: {{ include "sidetrace.paths.tokenDir" . }}
      readOnly: true
    {{- end }}
{{- end -}}

{{/*
volumes entries. Usage:

  volumes:
    {{- include "sidetrace.volumes" . | nindent 4 }}
*/}}
{{- define "sidetrace.volumes" -}}
{{- $c := dict -}}{{- $_ := include "sidetrace.resolve" (dict "in" . "out" $c) -}}
{{- $v := $c.v -}}
- name: sidetrace-config
  configMap:
    name: {{ include "sidetrace.configMapName" . }}
- name: sidetrace-keys
  secret:
    secretName: {{ include "sidetrace.keysSecretName" . }}
    defaultMode: {{ int $v.sidecar.keysDefaultMode }}
# The CA certificate alone, for the agent: never the keys.
- name: sidetrace-ca-cert
  secret:
    secretName: {{ include "sidetrace.keysSecretName" . }}
    defaultMode: 0444
    items:
      - key: ca-cert.pem
        path: ca-cert.pem
{{- if $v.agentEnv.caBundle }}
- name: sidetrace-trust
  emptyDir:
    sizeLimit: 8Mi
{{- end }}
- name: sidetrace-data
{{- if $v.persistence.enabled }}
  persistentVolumeClaim:
    claimName: {{ required "persistence.existingClaim: name the PersistentVolumeClaim for the journal (or set persistence.enabled=false for an emptyDir)" $v.persistence.existingClaim }}
{{- else }}
  emptyDir:
    sizeLimit: {{ $v.persistence.sizeLimit }}
{{- end }}
- name: sidetrace-tmp
  emptyDir:
    sizeLimit: {{ $v.sidecar.tmpSizeLimit }}
{{- if $v.sponsor.projectedToken.enabled }}
# The pod's service-account token for the sponsor, minted for sidetrace's
# audience and rotated by the kubelet (sidetrace re-reads it).
- name: sidetrace-token
  projected:
    sources:
      - serviceAccountToken:
          audience: {{ $v.sponsor.projectedToken.audience | quote }}
          expirationSeconds: {{ int $v.sponsor.projectedToken.expirationSeconds }}
          path: token
{{- end }}
{{- end -}}

{{/*
env entries for the agent container: everything goes through the sidecar,
and sidetrace's CA is trusted. Usage:

  env:
    {{- include "sidetrace.agentEnv" . | nindent 4 }}
*/}}
{{- define "sidetrace.agentEnv" -}}
{{- $c := dict -}}{{- $_ := include "sidetrace.resolve" (dict "in" . "out" $c) -}}
{{- $v := $c.v -}}
{{- $proxy := printf "http://127.0.0.1:%d" (int $v.sidecar.proxyPort) -}}
{{- $noProxy := join "," $v.agentEnv.noProxy -}}
{{- $bundle := printf "%s/ca-bundle.pem" (include "sidetrace.paths.trust" .) -}}
# Both spellings: curl and some Python tools read only the lower-case ones.
- name: HTTPS_PROXY
  value: {{ $proxy }}
- name: https_proxy
  value: {{ $proxy }}
- name: HTTP_PROXY
  value: {{ $proxy }}
- name: http_proxy
  value: {{ $proxy }}
- name: NO_PROXY
  value: {{ $noProxy | quote }}
- name: no_proxy
  value: {{ $noProxy | quote }}
# Node's own fetch and http honour the proxy variables only with this (Node 24+).
- name: NODE_USE_ENV_PROXY
  value: "1"
# Node-based agents (Claude Code, Codex CLI's launcher) add it to their roots.
- name: NODE_EXTRA_CA_CERTS
  value: {{ include "sidetrace.paths.caDir" . }}/ca-cert.pem
{{- if $v.agentEnv.caBundle }}
# One-file trust stores replace the system roots, so they get the bundle.
- name: SSL_CERT_FILE
  value: {{ $bundle }}
- name: REQUESTS_CA_BUNDLE
  value: {{ $bundle }}
- name: CURL_CA_BUNDLE
  value: {{ $bundle }}
- name: GIT_SSL_CAINFO
  value: {{ $bundle }}
{{- end }}
{{- end -}}

{{/*
volumeMounts entries for the agent container. Usage:

  volumeMounts:
    {{- include "sidetrace.agentVolumeMounts" . | nindent 4 }}
*/}}
{{- define "sidetrace.agentVolumeMounts" -}}
{{- $c := dict -}}{{- $_ := include "sidetrace.resolve" (dict "in" . "out" $c) -}}
- name: sidetrace-ca-cert
  mountPath: {{ include "sidetrace.paths.caDir" . }}
  readOnly: true
{{- if $c.v.agentEnv.caBundle }}
- name: sidetrace-trust
  mountPath: {{ include "sidetrace.paths.trust" . }}
  readOnly: true
{{- end }}
{{- end -}}
