package deploy_test

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// The Kubernetes manifests (the kustomize base), decoded strictly into
// their API types.

// kustomization is the part of kustomize's Kustomization this base uses;
// anything else in the file is an error, so new features get checked here.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
	Images     []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
		Digest  string `json:"digest,omitempty"`
	} `json:"images,omitempty"`
}

type k8sObjects struct {
	deployments []*appsv1.Deployment
	jobs        []*batchv1.Job
	configMaps  []*corev1.ConfigMap
	secrets     []*corev1.Secret
	services    []*corev1.Service
	pdbs        []*policyv1.PodDisruptionBudget
}

var docSep = regexp.MustCompile(`(?m)^---[ \t]*$`)

// loadKustomization decodes every document of every resource strictly into
// its typed API struct.
func loadKustomization(t *testing.T) (*kustomization, *k8sObjects) {
	t.Helper()
	const dir = "deploy/kubernetes"
	var k kustomization
	require.NoError(t, yaml.UnmarshalStrict(readFile(t, dir+"/kustomization.yaml"), &k))
	require.Equal(t, "kustomize.config.k8s.io/v1beta1", k.APIVersion)
	require.Equal(t, "Kustomization", k.Kind)
	require.NotEmpty(t, k.Resources)

	// No manifest left out of the kustomization.
	files, err := filepath.Glob(filepath.Join(repoRoot, dir, "*.yaml"))
	require.NoError(t, err)
	for _, f := range files {
		if base := filepath.Base(f); base != "kustomization.yaml" {
			require.Containsf(t, k.Resources, base, "%s is not listed in kustomization.yaml", base)
		}
	}

	objs := &k8sObjects{}
	for _, res := range k.Resources {
		require.NotContainsf(t, res, "..", "resource %s", res)
		data := readFile(t, dir+"/"+res)
		for i, doc := range docSep.Split(string(data), -1) {
			var probe map[string]any
			require.NoError(t, yaml.Unmarshal([]byte(doc), &probe))
			if len(probe) == 0 {
				continue // empty or comments only
			}
			var tm metav1.TypeMeta
			require.NoError(t, yaml.Unmarshal([]byte(doc), &tm))
			where := fmt.Sprintf("%s document %d (%s %s)", res, i+1, tm.APIVersion, tm.Kind)
			var into interface{ GetNamespace() string }
			switch tm.APIVersion + " " + tm.Kind {
			case "apps/v1 Deployment":
				o := &appsv1.Deployment{}
				objs.deployments, into = append(objs.deployments, o), o
			case "batch/v1 Job":
				o := &batchv1.Job{}
				objs.jobs, into = append(objs.jobs, o), o
			case "v1 ConfigMap":
				o := &corev1.ConfigMap{}
				objs.configMaps, into = append(objs.configMaps, o), o
			case "v1 Secret":
				o := &corev1.Secret{}
				objs.secrets, into = append(objs.secrets, o), o
			case "v1 Service":
				o := &corev1.Service{}
				objs.services, into = append(objs.services, o), o
			case "policy/v1 PodDisruptionBudget":
				o := &policyv1.PodDisruptionBudget{}
				objs.pdbs, into = append(objs.pdbs, o), o
			default:
				require.Failf(t, "unexpected kind", "%s: no typed check for this kind", where)
			}
			require.NoErrorf(t, yaml.UnmarshalStrict([]byte(doc), into), "%s: strict decode", where)
			require.Emptyf(t, into.GetNamespace(), "%s: the base sets no namespace", where)
		}
	}
	// The workers' and the console's (console.yaml).
	require.Len(t, objs.deployments, 2)
	require.Len(t, objs.jobs, 1)
	require.Len(t, objs.configMaps, 1)
	require.Len(t, objs.secrets, 2)
	require.Len(t, objs.services, 2)
	require.Len(t, objs.pdbs, 1)
	return &k, objs
}

// named is the object of that name.
func named[T interface{ GetName() string }](t *testing.T, objs []T, name string) T {
	t.Helper()
	for _, o := range objs {
		if o.GetName() == name {
			return o
		}
	}
	require.Failf(t, "missing object", "no %T named %s", *new(T), name)
	return *new(T)
}

func TestKubernetesManifests(t *testing.T) {
	t.Parallel()
	k, objs := loadKustomization(t)
	dep, job, cm, pdb := named(t, objs.deployments, "cmdtrack"), objs.jobs[0], objs.configMaps[0], objs.pdbs[0]
	sec, svc := named(t, objs.secrets, "cmdtrack"), named(t, objs.services, "cmdtrack-metrics")

	// ConfigMap and Secret: known variables, secrets only in the Secret and
	// only as placeholders, together a complete configuration.
	env := map[string]string{}
	for k, v := range cm.Data {
		env[k] = v
	}
	require.Empty(t, cm.BinaryData)
	require.Empty(t, sec.Data, "the Secret uses stringData placeholders only")
	require.NotEmpty(t, sec.StringData)
	for k, v := range sec.StringData {
		require.NotContainsf(t, env, k, "%s is in both the ConfigMap and the Secret", k)
		require.Containsf(t, v, placeholder, "Secret %s must be a placeholder, never a real value", k)
		env[k] = v
	}
	requireKnownVars(t, "ConfigMap", slices.Collect(mapKeys(cm.Data)))
	requireKnownVars(t, "Secret", slices.Collect(mapKeys(sec.StringData)))
	for _, secret := range []string{"CMDTRACK_DATABASE_URL", "CMDTRACK_AMQP_ACCESS_CODE", "CMDTRACK_AMQP_ACCESS_KEY"} {
		require.NotContainsf(t, cm.Data, secret, "%s belongs in the Secret", secret)
	}
	require.Contains(t, sec.StringData, "CMDTRACK_DATABASE_URL")
	require.Contains(t, sec.StringData, "CMDTRACK_AMQP_ACCESS_CODE")
	requireCompleteConfig(t, "ConfigMap+Secret", env)
	require.Equal(t, "false", cm.Data["CMDTRACK_MIGRATE_ON_START"], "the cmdtrack-migrate Job migrates")
	require.Equal(t, opsPort, opsPortOf(t, "ConfigMap", cm.Data["CMDTRACK_OPS_ADDR"]))
	grace := shutdownGrace(t, env)

	// The image the kustomization rewrites is the one the pods use.
	require.Len(t, k.Images, 1)
	require.Equal(t, imageName, k.Images[0].Name)

	// Deployment.
	require.NotNil(t, dep.Spec.Replicas)
	require.EqualValues(t, 2, *dep.Spec.Replicas)
	sel, err := metav1.LabelSelectorAsSelector(dep.Spec.Selector)
	require.NoError(t, err)
	require.False(t, sel.Empty())
	podLabels := labels.Set(dep.Spec.Template.Labels)
	require.True(t, sel.Matches(podLabels), "the Deployment selector matches its pod template")
	jobLabels := labels.Set(job.Spec.Template.Labels)
	require.False(t, sel.Matches(jobLabels), "the Deployment must not adopt the migrate Job's pods")
	pod := dep.Spec.Template.Spec
	require.NotNil(t, pod.TerminationGracePeriodSeconds)
	require.Greater(t, time.Duration(*pod.TerminationGracePeriodSeconds)*time.Second, grace+5*time.Second,
		"terminationGracePeriodSeconds must leave room above CMDTRACK_SHUTDOWN_GRACE")
	require.Len(t, pod.Containers, 1)
	c := pod.Containers[0]
	requirePodBasics(t, "Deployment", pod, c, cm.Name, sec.Name)
	if len(c.Args) > 0 {
		require.Equal(t, []string{"run"}, c.Args)
	}
	var containerPort int32
	for _, p := range c.Ports {
		if p.ContainerPort == opsPort {
			containerPort = p.ContainerPort
			require.NotEmpty(t, p.Name)
		}
	}
	require.EqualValues(t, opsPort, containerPort, "containerPort %d", opsPort)
	for _, probe := range []struct {
		name string
		p    *corev1.Probe
		path string
	}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
		require.NotNilf(t, probe.p, "%s probe", probe.name)
		require.NotNilf(t, probe.p.HTTPGet, "%s probe is httpGet", probe.name)
		require.Equal(t, probe.path, probe.p.HTTPGet.Path)
		require.EqualValuesf(t, opsPort, resolvePort(t, c, probe.p.HTTPGet.Port), "%s probe port", probe.name)
	}
	for _, e := range c.Env {
		requireKnownVars(t, "Deployment env", []string{e.Name})
	}

	// Job.
	require.Equal(t, "cmdtrack-migrate", job.Name)
	require.NotNil(t, job.Spec.BackoffLimit)
	require.Positive(t, *job.Spec.BackoffLimit)
	jpod := job.Spec.Template.Spec
	require.Contains(t, []corev1.RestartPolicy{corev1.RestartPolicyNever, corev1.RestartPolicyOnFailure}, jpod.RestartPolicy)
	require.Len(t, jpod.Containers, 1)
	jc := jpod.Containers[0]
	require.Equal(t, []string{"migrate"}, jc.Args)
	require.Empty(t, jc.Command, "the image's ENTRYPOINT is /cmdtrack")
	require.Equal(t, c.Image, jc.Image)
	requirePodBasics(t, "Job", jpod, jc, cm.Name, sec.Name)

	// Service.
	require.NotEmpty(t, svc.Spec.Selector)
	svcSel := labels.SelectorFromSet(svc.Spec.Selector)
	require.True(t, svcSel.Matches(podLabels), "the Service selects the worker pods")
	require.False(t, svcSel.Matches(jobLabels), "the Service must not select the migrate Job")
	require.Len(t, svc.Spec.Ports, 1)
	require.EqualValues(t, opsPort, svc.Spec.Ports[0].Port)
	require.EqualValues(t, opsPort, resolvePort(t, c, svc.Spec.Ports[0].TargetPort))
	if svc.Annotations["prometheus.io/scrape"] != "" {
		require.Equal(t, "true", svc.Annotations["prometheus.io/scrape"])
		require.Equal(t, strconv.Itoa(opsPort), svc.Annotations["prometheus.io/port"])
		require.Equal(t, "/metrics", svc.Annotations["prometheus.io/path"])
	}

	// PodDisruptionBudget.
	require.NotNil(t, pdb.Spec.MinAvailable)
	require.Equal(t, intstr.FromInt32(1), *pdb.Spec.MinAvailable)
	require.Nil(t, pdb.Spec.MaxUnavailable)
	require.Less(t, pdb.Spec.MinAvailable.IntValue(), int(*dep.Spec.Replicas), "the PDB must allow one eviction")
	pdbSel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	require.NoError(t, err)
	require.False(t, pdbSel.Empty())
	require.True(t, pdbSel.Matches(podLabels), "the PDB selects the worker pods")
	require.False(t, pdbSel.Matches(jobLabels), "the PDB must not count the migrate Job")
}

// The console runs apart from the workers, as a reader, and cannot start
// beyond loopback without its credentials.
func TestKubernetesConsole(t *testing.T) {
	t.Parallel()
	_, objs := loadKustomization(t)
	worker := named(t, objs.deployments, "cmdtrack")
	dep, sec, svc := named(t, objs.deployments, "cmdtrack-console"), named(t, objs.secrets, "cmdtrack-console"), named(t, objs.services, "cmdtrack-console")
	workerSel, err := metav1.LabelSelectorAsSelector(worker.Spec.Selector)
	require.NoError(t, err)
	sel, err := metav1.LabelSelectorAsSelector(dep.Spec.Selector)
	require.NoError(t, err)
	podLabels := labels.Set(dep.Spec.Template.Labels)
	require.True(t, sel.Matches(podLabels))
	require.False(t, workerSel.Matches(podLabels), "the workers' Deployment must not adopt the console's pods")
	require.False(t, sel.Matches(labels.Set(worker.Spec.Template.Labels)), "nor the console's the workers'")
	for _, s := range objs.services {
		if s.Name != svc.Name {
			require.False(t, labels.SelectorFromSet(s.Spec.Selector).Matches(podLabels), "%s selects the console", s.Name)
		}
	}
	for _, p := range objs.pdbs {
		ps, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		require.NoError(t, err)
		require.False(t, ps.Matches(podLabels), "%s counts the console", p.Name)
	}

	require.Len(t, dep.Spec.Template.Spec.Containers, 1)
	c := dep.Spec.Template.Spec.Containers[0]
	require.Equal(t, []string{"console"}, c.Args)
	require.Empty(t, c.Command, "the image's ENTRYPOINT is /cmdtrack")
	require.Equal(t, worker.Spec.Template.Spec.Containers[0].Image, c.Image)
	env := map[string]string{}
	for k, v := range sec.StringData {
		require.Containsf(t, v, placeholder, "Secret %s must be a placeholder", k)
		env[k] = v
	}
	require.Empty(t, sec.Data)
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	requireKnownVars(t, "console", slices.Collect(mapKeys(env)))
	requireCompleteConfig(t, "console", env)
	require.Len(t, c.EnvFrom, 1)
	require.Equal(t, sec.Name, c.EnvFrom[0].SecretRef.Name, "the console's own Secret: a reader's database URL")
	db, err := url.Parse(env["CMDTRACK_DATABASE_URL"])
	require.NoError(t, err)
	require.NotEqual(t, "cmdtrack", db.User.Username(), "the console connects as a reader, not as the worker")
	require.NotEmpty(t, env["CMDTRACK_CONSOLE_USER"], "beyond loopback the console needs credentials")
	require.NotEmpty(t, env["CMDTRACK_CONSOLE_PASSWORD"])
	_, port, err := net.SplitHostPort(env["CMDTRACK_CONSOLE_ADDR"])
	require.NoError(t, err)
	require.Len(t, c.Ports, 1)
	require.Equal(t, port, strconv.Itoa(int(c.Ports[0].ContainerPort)))
	require.Len(t, svc.Spec.Ports, 1)
	require.Equal(t, c.Ports[0].ContainerPort, resolvePort(t, c, svc.Spec.Ports[0].TargetPort))
	require.True(t, labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels))
	require.NotNil(t, c.ReadinessProbe)
	require.NotNil(t, c.LivenessProbe)

	// Same restricted profile as the workers, but its own Secret and no
	// ConfigMap: requirePodBasics' envFrom check does not apply.
	pod := dep.Spec.Template.Spec
	csc := c.SecurityContext
	require.NotNil(t, csc)
	require.True(t, *csc.ReadOnlyRootFilesystem)
	require.False(t, *csc.AllowPrivilegeEscalation)
	require.Equal(t, []corev1.Capability{"ALL"}, csc.Capabilities.Drop)
	require.True(t, *pod.SecurityContext.RunAsNonRoot)
	require.EqualValues(t, nonRootUID, *pod.SecurityContext.RunAsUser)
	require.False(t, *pod.AutomountServiceAccountToken)
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		require.Contains(t, c.Resources.Requests, res)
		require.Contains(t, c.Resources.Limits, res)
	}
}

// requirePodBasics checks what the worker and the migrate Job share: image,
// configuration, resources and the restricted security profile.
func requirePodBasics(t *testing.T, where string, pod corev1.PodSpec, c corev1.Container, configMap, secret string) {
	t.Helper()
	require.Regexpf(t, `^`+imageName+`(:|@|$)`, c.Image, "%s image (kustomization images: rewrites %q)", where, imageName)

	var refs []string
	for _, ef := range c.EnvFrom {
		switch {
		case ef.ConfigMapRef != nil:
			refs = append(refs, "ConfigMap/"+ef.ConfigMapRef.Name)
		case ef.SecretRef != nil:
			refs = append(refs, "Secret/"+ef.SecretRef.Name)
		}
	}
	require.ElementsMatchf(t, []string{"ConfigMap/" + configMap, "Secret/" + secret}, refs, "%s envFrom", where)

	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, ok := c.Resources.Requests[res]
		require.Truef(t, ok, "%s requests %s", where, res)
		lim, ok := c.Resources.Limits[res]
		require.Truef(t, ok, "%s limits %s", where, res)
		require.LessOrEqualf(t, req.Cmp(lim), 0, "%s: %s request above its limit", where, res)
	}

	psc, csc := pod.SecurityContext, c.SecurityContext
	require.NotNilf(t, csc, "%s container securityContext", where)
	runAsNonRoot := csc.RunAsNonRoot
	runAsUser := csc.RunAsUser
	seccomp := csc.SeccompProfile
	if psc != nil {
		runAsNonRoot = cmpOr(runAsNonRoot, psc.RunAsNonRoot)
		runAsUser = cmpOr(runAsUser, psc.RunAsUser)
		seccomp = cmpOr(seccomp, psc.SeccompProfile)
	}
	require.NotNilf(t, runAsNonRoot, "%s runAsNonRoot", where)
	require.Truef(t, *runAsNonRoot, "%s runAsNonRoot", where)
	require.NotNilf(t, runAsUser, "%s runAsUser", where)
	require.EqualValuesf(t, nonRootUID, *runAsUser, "%s runAsUser", where)
	require.NotNilf(t, seccomp, "%s seccompProfile", where)
	require.Equalf(t, corev1.SeccompProfileTypeRuntimeDefault, seccomp.Type, "%s seccompProfile", where)
	require.NotNilf(t, csc.ReadOnlyRootFilesystem, "%s readOnlyRootFilesystem", where)
	require.Truef(t, *csc.ReadOnlyRootFilesystem, "%s readOnlyRootFilesystem", where)
	require.NotNilf(t, csc.AllowPrivilegeEscalation, "%s allowPrivilegeEscalation", where)
	require.Falsef(t, *csc.AllowPrivilegeEscalation, "%s allowPrivilegeEscalation", where)
	if csc.Privileged != nil {
		require.Falsef(t, *csc.Privileged, "%s privileged", where)
	}
	require.NotNilf(t, csc.Capabilities, "%s capabilities", where)
	require.Equalf(t, []corev1.Capability{"ALL"}, csc.Capabilities.Drop, "%s capabilities.drop", where)
	require.Emptyf(t, csc.Capabilities.Add, "%s capabilities.add", where)
	if pod.AutomountServiceAccountToken != nil {
		require.Falsef(t, *pod.AutomountServiceAccountToken, "%s needs no API access", where)
	}
}

func cmpOr[T any](a, b *T) *T {
	if a != nil {
		return a
	}
	return b
}

// resolvePort turns a port number or a container port name into a number.
func resolvePort(t *testing.T, c corev1.Container, p intstr.IntOrString) int32 {
	t.Helper()
	if p.Type == intstr.Int {
		return p.IntVal
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort
		}
	}
	require.Failf(t, "unknown port name", "container %s has no port named %q", c.Name, p.StrVal)
	return 0
}
