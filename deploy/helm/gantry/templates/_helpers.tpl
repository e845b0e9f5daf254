{{/*
Labels of every object: deploy/kubernetes' (name, component, part-of) and
Helm's. Call with (list $ "component").
*/}}
{{- define "gantry.labels" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: gantry
app.kubernetes.io/component: {{ index . 1 }}
app.kubernetes.io/part-of: gantry
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/managed-by: {{ $.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" $.Chart.Name $.Chart.Version | replace "+" "_" }}
{{- end }}

{{/* Selector labels of a component, as deploy/kubernetes selects. */}}
{{- define "gantry.selector" -}}
app.kubernetes.io/name: gantry
app.kubernetes.io/component: {{ . }}
{{- end }}

{{- define "gantry.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default "latest" }}
{{- end -}}
{{- end }}

{{/* Non-empty when a pool's Deployment is sized by the coordinators. */}}
{{- define "gantry.poolAutoscales" -}}
{{- $as := .autoscale | default dict -}}
{{- if or (not (hasKey $as "enabled")) $as.enabled }}true{{ end -}}
{{- end }}

{{/* Non-empty when any pool is sized by the coordinators. */}}
{{- define "gantry.autoscale" -}}
{{- range .Values.agents.pools }}{{ include "gantry.poolAutoscales" . }}{{ end -}}
{{- end }}

{{/* The initial Raft voters: the StatefulSet's pods, by their DNS names. */}}
{{- define "gantry.peers" -}}
{{- $out := list -}}
{{- range $i := until (int .Values.coordinator.replicas) -}}
{{- $out = append $out (printf "gantry-coordinator-%d=gantry-coordinator-%d.gantry-coordinator:7422" $i $i) -}}
{{- end -}}
{{ join "," $out }}
{{- end }}

{{/* Every coordinator's NATS route URL; a server ignores its own. */}}
{{- define "gantry.natsRoutes" -}}
{{- $out := list -}}
{{- range $i := until (int .Values.coordinator.replicas) -}}
{{- $out = append $out (printf "nats://gantry-coordinator-%d.gantry-coordinator:6222" $i) -}}
{{- end -}}
{{ join "," $out }}
{{- end }}

{{/* Host names of the client Service, which the console answers to. */}}
{{- define "gantry.httpHosts" -}}
{{- $ns := .Release.Namespace -}}
{{- $out := list "gantry-api" (printf "gantry-api.%s" $ns) (printf "gantry-api.%s.svc" $ns) (printf "gantry-api.%s.svc.%s" $ns .Values.clusterDomain) -}}
{{ join "," (concat $out .Values.coordinator.httpHosts) }}
{{- end }}

{{/* Pod and container security contexts of deploy/kubernetes. */}}
{{- define "gantry.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile: {type: RuntimeDefault}
{{- end }}

{{- define "gantry.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities: {drop: [ALL]}
{{- end }}

{{/* The agents' permissions in a namespace (Role) or everywhere (ClusterRole). */}}
{{- define "gantry.agentRules" -}}
- apiGroups: [""]
  resources: [configmaps, secrets, services, serviceaccounts, persistentvolumeclaims]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [""]
  resources: [pods, events, endpoints]
  verbs: [get, list, watch]
- apiGroups: [apps]
  resources: [deployments, statefulsets, daemonsets]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [apps]
  resources: [replicasets, controllerrevisions]
  verbs: [get, list, watch]
- apiGroups: [batch]
  resources: [jobs, cronjobs]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [networking.k8s.io]
  resources: [ingresses, networkpolicies]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [get, list, watch]
# Applications that bring their own RBAC. Granting permissions requires
# holding them, so an agent can only hand out what this role allows.
- apiGroups: [rbac.authorization.k8s.io]
  resources: [roles, rolebindings]
  verbs: [get, list, watch, create, update, patch, delete]
{{- end }}
