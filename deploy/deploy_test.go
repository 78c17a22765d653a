package deploy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go/parser"
	"go/token"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	kyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/kustomize/api/krusty"
	kusttypes "sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/lariat-gw/lariat/featurefetch"
	"github.com/lariat-gw/lariat/gateway"
	"github.com/lariat-gw/lariat/internal/promexpo"
	"github.com/lariat-gw/lariat/internal/registrytest"
	"github.com/lariat-gw/lariat/internal/testbin"
	"github.com/lariat-gw/lariat/internal/upstreamtest"
	"github.com/lariat-gw/lariat/registry"
	"github.com/lariat-gw/lariat/router"
	"github.com/lariat-gw/lariat/tasks"
)

const (
	baseDir       = "kustomize/base"
	overlayDir    = "kustomize/overlays/production"
	dashboardFile = "grafana/lariat-dashboard.json"
	dockerfile    = "Dockerfile"

	namespace = "lariat"
	imageName = "ghcr.io/lariat-gw/lariat"
	binDir    = "/usr/local/bin/"
	// nonRootUID is the distroless "nonroot" user the image runs as.
	nonRootUID = 65532
	// postgresSecret is the registry's database Secret; the production
	// overlay expects it to be created outside Git.
	postgresSecret = "lariat-registry-postgres"
)

// externalClaims are volumes other systems provide: the offline pipeline's
// feature exports, read by the batch load.
var externalClaims = []string{"lariat-feature-exports"}

// strictCodec decodes YAML into the client-go scheme's types and fails on
// unknown or duplicate fields.
var strictCodec = kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme.Scheme, scheme.Scheme,
	kjson.SerializerOptions{Yaml: true, Strict: true})

// object is one decoded manifest: a typed k8s.io/api object, or an
// *unstructured.Unstructured for custom resources checked structurally.
type object struct {
	source string
	gvk    schema.GroupVersionKind
	obj    runtime.Object
}

func (o object) meta() metav1.Object {
	m, err := metaOf(o.obj)
	if err != nil {
		panic("BUG: decoded object without metadata: " + err.Error())
	}
	return m
}

func metaOf(obj runtime.Object) (metav1.Object, error) {
	if u, ok := obj.(*unstructured.Unstructured); ok {
		return u, nil
	}
	m, ok := obj.(metav1.Object)
	if !ok {
		return nil, fmt.Errorf("%T has no object metadata", obj)
	}
	return m, nil
}

func (o object) String() string {
	return fmt.Sprintf("%s %s/%s (%s)", o.gvk.Kind, o.meta().GetNamespace(), o.meta().GetName(), o.source)
}

// customKinds are the kinds without Go types in k8s.io/api, each with its
// structural check.
var customKinds = map[schema.GroupVersionKind]func(*unstructured.Unstructured) error{
	{Group: "monitoring.coreos.com", Version: "v1", Kind: "ServiceMonitor"}: checkServiceMonitor,
}

// decodeStrict decodes every YAML document of data.
func decodeStrict(source string, data []byte) ([]object, error) {
	r := kyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var objs []object
	for i := 0; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: cannot split YAML documents: %w", source, err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		src := source
		if i > 0 {
			src = fmt.Sprintf("%s#%d", source, i)
		}
		o, err := decodeOne(src, doc)
		if err != nil {
			return nil, err
		}
		objs = append(objs, o)
	}
	if len(objs) == 0 {
		return nil, fmt.Errorf("%s: no objects", source)
	}
	return objs, nil
}

func stripComments(doc []byte) []byte {
	var out []byte
	for line := range bytes.Lines(doc) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' && !bytes.Equal(t, []byte("---")) {
			out = append(out, line...)
		}
	}
	return out
}

func decodeOne(source string, doc []byte) (object, error) {
	obj, gvk, err := strictCodec.Decode(doc, nil, nil)
	if err == nil {
		if _, err := metaOf(obj); err != nil {
			return object{}, fmt.Errorf("%s: %w; want one object per document", source, err)
		}
		return object{source: source, gvk: *gvk, obj: obj}, nil
	}
	if !runtime.IsNotRegisteredError(err) {
		return object{}, fmt.Errorf("%s: %w", source, err)
	}
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return object{}, fmt.Errorf("%s: %w", source, err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(js); err != nil {
		return object{}, fmt.Errorf("%s: %w", source, err)
	}
	check := customKinds[u.GroupVersionKind()]
	if check == nil {
		return object{}, fmt.Errorf("%s: kind %s has no Go type and no structural check", source, u.GroupVersionKind())
	}
	if err := check(u); err != nil {
		return object{}, fmt.Errorf("%s: %s %q: %w", source, u.GetKind(), u.GetName(), err)
	}
	return object{source: source, gvk: u.GroupVersionKind(), obj: u}, nil
}

// promDuration is the pattern the Prometheus Operator CRDs use for durations.
var promDuration = regexp.MustCompile(`^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$`)

// Known fields of ServiceMonitor (monitoring.coreos.com/v1) that a typo
// would otherwise slip past; from the Prometheus Operator's API reference.
var (
	serviceMonitorTopFields  = []string{"apiVersion", "kind", "metadata", "spec"}
	serviceMonitorSpecFields = []string{
		"attachMetadata", "bodySizeLimit", "convertClassicHistogramsToNHCB", "endpoints", "fallbackScrapeProtocol",
		"jobLabel", "keepDroppedTargets", "labelLimit", "labelNameLengthLimit", "labelValueLengthLimit",
		"namespaceSelector", "nativeHistogramBucketLimit", "nativeHistogramMinBucketFactor", "podTargetLabels",
		"sampleLimit", "scrapeClass", "scrapeClassicHistograms", "scrapeProtocols", "selector", "selectorMechanism",
		"targetLabels", "targetLimit",
	}
	serviceMonitorEndpointFields = []string{
		"authorization", "basicAuth", "bearerTokenFile", "bearerTokenSecret", "enableHttp2", "filterRunning",
		"followRedirects", "honorLabels", "honorTimestamps", "interval", "metricRelabelings", "noProxy",
		"oauth2", "params", "path", "port", "proxyConnectHeader", "proxyFromEnvironment", "proxyUrl",
		"relabelings", "scheme", "scrapeTimeout", "targetPort", "tlsConfig", "trackTimestampsStaleness",
	}
)

func unknownKeys(m map[string]any, known []string) []string {
	var bad []string
	for k := range m {
		if !slices.Contains(known, k) {
			bad = append(bad, k)
		}
	}
	sort.Strings(bad)
	return bad
}

// checkServiceMonitor validates a ServiceMonitor's structure: required
// fields, known field names, a valid label selector and endpoints that
// name a port and a path.
func checkServiceMonitor(u *unstructured.Unstructured) error {
	if bad := unknownKeys(u.Object, serviceMonitorTopFields); len(bad) > 0 {
		return fmt.Errorf("unknown fields %q", bad)
	}
	if u.GetName() == "" {
		return errors.New("metadata.name is required")
	}
	spec, ok, err := unstructured.NestedMap(u.Object, "spec")
	if err != nil || !ok {
		return fmt.Errorf("spec must be an object (%v)", err)
	}
	if bad := unknownKeys(spec, serviceMonitorSpecFields); len(bad) > 0 {
		return fmt.Errorf("unknown fields in spec: %q", bad)
	}
	sel, ok, err := unstructured.NestedMap(spec, "selector")
	if err != nil || !ok {
		return fmt.Errorf("spec.selector is required (%v)", err)
	}
	var ls metav1.LabelSelector
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(sel, &ls, true); err != nil {
		return fmt.Errorf("spec.selector: %w", err)
	}
	if len(ls.MatchLabels) == 0 && len(ls.MatchExpressions) == 0 {
		return errors.New("spec.selector selects every Service; give it labels")
	}
	if _, err := metav1.LabelSelectorAsSelector(&ls); err != nil {
		return fmt.Errorf("spec.selector: %w", err)
	}
	eps, ok, err := unstructured.NestedSlice(spec, "endpoints")
	if err != nil || !ok || len(eps) == 0 {
		return fmt.Errorf("spec.endpoints must list at least one endpoint (%v)", err)
	}
	for i, e := range eps {
		ep, ok := e.(map[string]any)
		if !ok {
			return fmt.Errorf("spec.endpoints[%d] must be an object", i)
		}
		if bad := unknownKeys(ep, serviceMonitorEndpointFields); len(bad) > 0 {
			return fmt.Errorf("unknown fields in spec.endpoints[%d]: %q", i, bad)
		}
		port, _ := ep["port"].(string)
		if port == "" && ep["targetPort"] == nil {
			return fmt.Errorf("spec.endpoints[%d] needs port (a Service port name) or targetPort", i)
		}
		if p, ok := ep["path"]; ok {
			if s, _ := p.(string); !strings.HasPrefix(s, "/") {
				return fmt.Errorf("spec.endpoints[%d].path %q must start with /", i, p)
			}
		}
		var interval, timeout time.Duration
		for _, f := range []struct {
			name string
			dst  *time.Duration
		}{{"interval", &interval}, {"scrapeTimeout", &timeout}} {
			v, ok := ep[f.name]
			if !ok {
				continue
			}
			s, _ := v.(string)
			if s == "" || !promDuration.MatchString(s) {
				return fmt.Errorf("spec.endpoints[%d].%s %v is not a Prometheus duration", i, f.name, v)
			}
			if d, err := time.ParseDuration(s); err == nil {
				*f.dst = d
			}
		}
		if interval > 0 && timeout > interval {
			return fmt.Errorf("spec.endpoints[%d]: scrapeTimeout %s exceeds interval %s", i, timeout, interval)
		}
	}
	return nil
}

// kustomization reads dir/kustomization.yaml strictly.
func kustomization(t *testing.T, dir string) *kusttypes.Kustomization {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k kusttypes.Kustomization
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		t.Fatalf("%s/kustomization.yaml: %v", dir, err)
	}
	if k.Kind != kusttypes.KustomizationKind || k.APIVersion != kusttypes.KustomizationVersion {
		t.Fatalf("%s/kustomization.yaml: apiVersion/kind = %s/%s", dir, k.APIVersion, k.Kind)
	}
	return &k
}

// TestManifestsDecodeStrictly decodes every manifest and patch file the
// kustomizations name into the k8s.io/api types, failing on unknown or
// duplicate fields, and checks that no YAML file is left unreferenced.
func TestManifestsDecodeStrictly(t *testing.T) {
	referenced := map[string]bool{}
	for _, dir := range []string{baseDir, overlayDir} {
		k := kustomization(t, dir)
		referenced[filepath.Join(dir, "kustomization.yaml")] = true
		for _, r := range k.Resources {
			p := filepath.Join(dir, r)
			st, err := os.Stat(p)
			if err != nil {
				t.Errorf("%s: resource %q: %v", dir, r, err)
				continue
			}
			if st.IsDir() {
				continue // another kustomization, checked on its own
			}
			referenced[p] = true
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			objs, err := decodeStrict(p, data)
			if err != nil {
				t.Error(err)
				continue
			}
			for _, o := range objs {
				checkMeta(t, o)
			}
		}
		for i, p := range k.Patches {
			var data []byte
			src := fmt.Sprintf("%s patches[%d]", dir, i)
			if p.Path != "" {
				src = filepath.Join(dir, p.Path)
				referenced[src] = true
				var err error
				if data, err = os.ReadFile(src); err != nil {
					t.Errorf("%s: %v", dir, err)
					continue
				}
			} else {
				data = []byte(p.Patch)
			}
			if ops, ok := jsonPatch(data); ok {
				if p.Target == nil {
					t.Errorf("%s: a JSON patch needs a target", src)
				}
				for j, op := range ops {
					if !slices.Contains([]string{"add", "remove", "replace", "move", "copy", "test"}, op.Op) || !strings.HasPrefix(op.Path, "/") {
						t.Errorf("%s: operation %d: %+v is not a JSON patch operation", src, j, op)
					}
				}
				continue
			}
			data, err := withoutPatchDirectives(data)
			if err != nil {
				t.Errorf("%s: %v", src, err)
				continue
			}
			if _, err := decodeStrict(src, data); err != nil {
				t.Error(err)
			}
		}
		for _, g := range k.ConfigMapGenerator {
			for _, f := range g.FileSources {
				if _, path, ok := strings.Cut(f, "="); ok {
					f = path
				}
				referenced[filepath.Join(dir, f)] = true
			}
		}
	}
	err := filepath.WalkDir("kustomize", func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) && !referenced[p] {
			t.Errorf("%s is not referenced by any kustomization, so it is never applied", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// jsonPatchOp is one RFC 6902 operation.
type jsonPatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	From  string `json:"from,omitempty"`
	Value any    `json:"value,omitempty"`
}

// jsonPatch decodes data as a JSON patch, if it is a list of operations.
func jsonPatch(data []byte) ([]jsonPatchOp, bool) {
	var ops []jsonPatchOp
	if err := yaml.UnmarshalStrict(data, &ops); err != nil || len(ops) == 0 {
		return nil, false
	}
	return ops, true
}

// withoutPatchDirectives drops strategic-merge directives ($patch,
// $retainKeys, ...) from the top of a patch so the rest decodes strictly.
func withoutPatchDirectives(data []byte) ([]byte, error) {
	var m map[string]any
	if err := yaml.UnmarshalStrict(data, &m); err != nil {
		return nil, err
	}
	for k := range m {
		if strings.HasPrefix(k, "$") {
			delete(m, k)
		}
	}
	return yaml.Marshal(m)
}

// checkMeta checks names and labels against Kubernetes' syntax rules.
func checkMeta(t reporter, o object) {
	t.Helper()
	m := o.meta()
	for _, msg := range validation.IsDNS1123Subdomain(m.GetName()) {
		t.Errorf("%s: name: %s", o, msg)
	}
	for k, v := range m.GetLabels() {
		for _, msg := range validation.IsQualifiedName(k) {
			t.Errorf("%s: label key %q: %s", o, k, msg)
		}
		for _, msg := range validation.IsValidLabelValue(v) {
			t.Errorf("%s: label %s value %q: %s", o, k, v, msg)
		}
	}
}

// TestStrictDecodingRejects proves the decoding above is strict: mistakes
// that kubectl apply would silently drop or that the API server would reject
// fail here.
func TestStrictDecodingRejects(t *testing.T) {
	f := func(name, doc, want string) {
		t.Helper()
		_, err := decodeStrict(name, []byte(doc))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one containing %q", name, err, want)
		}
	}
	f("unknown field", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replica: 3\n", `unknown field "spec.replica"`)
	f("duplicate field", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  type: ClusterIP\n  type: NodePort\n", `already set in map`)
	f("wrong type", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  ports: {name: http}\n", "cannot unmarshal")
	f("unknown kind", "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: x}\n", "no Go type and no structural check")
	f("no kind", "metadata: {name: x}\n", "kind")
	f("list", "apiVersion: v1\nkind: List\nitems: []\n", "want one object per document")
	const sm = "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: x}\n"
	f("servicemonitor typo", sm+"spec:\n  selector: {matchLabels: {a: b}}\n  endpoint: [{port: admin}]\n", `unknown fields in spec: ["endpoint"]`)
	f("servicemonitor no endpoints", sm+"spec:\n  selector: {matchLabels: {a: b}}\n", "spec.endpoints must list")
	f("servicemonitor endpoint typo", sm+"spec:\n  selector: {matchLabels: {a: b}}\n  endpoints: [{port: admin, intervall: 15s}]\n", `["intervall"]`)
	f("servicemonitor no port", sm+"spec:\n  selector: {matchLabels: {a: b}}\n  endpoints: [{path: /metrics}]\n", "needs port")
	f("servicemonitor bad interval", sm+"spec:\n  selector: {matchLabels: {a: b}}\n  endpoints: [{port: admin, interval: 15}]\n", "not a Prometheus duration")
	f("servicemonitor timeout", sm+"spec:\n  selector: {matchLabels: {a: b}}\n  endpoints: [{port: admin, interval: 5s, scrapeTimeout: 10s}]\n", "exceeds interval")
	f("servicemonitor empty selector", sm+"spec:\n  selector: {}\n  endpoints: [{port: admin}]\n", "selects every Service")
	f("servicemonitor bad selector", sm+"spec:\n  selector: {matchLabel: {a: b}}\n  endpoints: [{port: admin}]\n", "matchLabel")
}

// build renders a kustomization the way kubectl apply -k does and decodes
// every object strictly.
func build(t *testing.T, dir string) []object {
	t.Helper()
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), abs)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	var objs []object
	for _, r := range m.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			t.Fatalf("kustomize build %s: %s: %v", dir, r.CurId(), err)
		}
		decoded, err := decodeStrict("kustomize build "+dir+": "+r.CurId().String(), y)
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, decoded...)
	}
	return objs
}

// rendered indexes the objects of one kustomize build.
type rendered struct {
	all         []object
	deployments map[string]*appsv1.Deployment
	cronJobs    map[string]*batchv1.CronJob
	services    map[string]*corev1.Service
	configMaps  map[string]*corev1.ConfigMap
	secrets     map[string]*corev1.Secret
	accounts    map[string]*corev1.ServiceAccount
	roles       map[string]*rbacv1.Role
	bindings    map[string]*rbacv1.RoleBinding
	hpas        map[string]*autoscalingv2.HorizontalPodAutoscaler
	pdbs        map[string]*policyv1.PodDisruptionBudget
	claims      map[string]*corev1.PersistentVolumeClaim
	monitors    []*unstructured.Unstructured
}

func index(t *testing.T, objs []object) *rendered {
	t.Helper()
	r := &rendered{
		all:         objs,
		deployments: map[string]*appsv1.Deployment{},
		cronJobs:    map[string]*batchv1.CronJob{},
		services:    map[string]*corev1.Service{},
		configMaps:  map[string]*corev1.ConfigMap{},
		secrets:     map[string]*corev1.Secret{},
		accounts:    map[string]*corev1.ServiceAccount{},
		roles:       map[string]*rbacv1.Role{},
		bindings:    map[string]*rbacv1.RoleBinding{},
		hpas:        map[string]*autoscalingv2.HorizontalPodAutoscaler{},
		pdbs:        map[string]*policyv1.PodDisruptionBudget{},
		claims:      map[string]*corev1.PersistentVolumeClaim{},
	}
	for _, o := range objs {
		name := o.meta().GetName()
		switch v := o.obj.(type) {
		case *appsv1.Deployment:
			r.deployments[name] = v
		case *batchv1.CronJob:
			r.cronJobs[name] = v
		case *corev1.Service:
			r.services[name] = v
		case *corev1.ConfigMap:
			r.configMaps[name] = v
		case *corev1.Secret:
			r.secrets[name] = v
		case *corev1.ServiceAccount:
			r.accounts[name] = v
		case *rbacv1.Role:
			r.roles[name] = v
		case *rbacv1.RoleBinding:
			r.bindings[name] = v
		case *autoscalingv2.HorizontalPodAutoscaler:
			r.hpas[name] = v
		case *policyv1.PodDisruptionBudget:
			r.pdbs[name] = v
		case *corev1.PersistentVolumeClaim:
			r.claims[name] = v
		case *unstructured.Unstructured:
			if v.GetKind() == "ServiceMonitor" {
				r.monitors = append(r.monitors, v)
			}
		case *corev1.Namespace:
		default:
			t.Errorf("%s: kind not covered by the checks", o)
		}
	}
	return r
}

// configMapByPrefix finds a generated ConfigMap, whose name may carry a
// content-hash suffix.
func (r *rendered) configMapByPrefix(name string) *corev1.ConfigMap {
	if cm := r.configMaps[name]; cm != nil {
		return cm
	}
	for n, cm := range r.configMaps {
		if strings.HasPrefix(n, name+"-") {
			return cm
		}
	}
	return nil
}

// workload is one pod template with where it came from.
type workload struct {
	name string
	pod  *corev1.PodTemplateSpec
}

func (r *rendered) workloads() []workload {
	var ws []workload
	for n, d := range r.deployments {
		ws = append(ws, workload{"Deployment " + n, &d.Spec.Template})
	}
	for n, c := range r.cronJobs {
		ws = append(ws, workload{"CronJob " + n, &c.Spec.JobTemplate.Spec.Template})
	}
	sort.Slice(ws, func(i, j int) bool { return ws[i].name < ws[j].name })
	return ws
}

// TestKustomizeBuild renders the base and the production overlay, decodes
// every rendered object strictly and checks how the objects fit together.
func TestKustomizeBuild(t *testing.T) {
	binaries := cmdBinaries(t)
	for _, tc := range []struct {
		dir        string
		production bool
	}{{baseDir, false}, {overlayDir, true}} {
		t.Run(filepath.Base(tc.dir), func(t *testing.T) {
			r := index(t, build(t, tc.dir))
			checkRendered(t, r, binaries, tc.production)
			gw := r.deployments["lariat-gateway"]
			if gw == nil {
				t.Fatal("no lariat-gateway Deployment")
			}
			_, hasSecret := r.secrets[postgresSecret]
			if tc.production {
				if hasSecret {
					t.Errorf("production renders the example Secret %s; it must come from outside Git", postgresSecret)
				}
				for _, w := range r.workloads() {
					for _, c := range w.pod.Spec.Containers {
						if strings.HasSuffix(c.Image, ":latest") || !strings.Contains(c.Image, ":") {
							t.Errorf("%s: production image %q is not pinned", w.name, c.Image)
						}
					}
				}
				if hpa := r.hpas["lariat-gateway"]; hpa == nil || *hpa.Spec.MinReplicas < 3 {
					t.Errorf("production gateway HPA should keep at least 3 replicas (one per zone)")
				}
			} else if !hasSecret {
				t.Errorf("base lacks its example Secret %s", postgresSecret)
			}
		})
	}
}

func checkRendered(t reporter, r *rendered, binaries []string, production bool) {
	t.Helper()
	for _, o := range r.all {
		checkMeta(t, o)
		ns := o.meta().GetNamespace()
		if o.gvk.Kind == "Namespace" {
			if o.meta().GetName() != namespace {
				t.Errorf("%s: unexpected namespace object", o)
			}
		} else if ns != namespace {
			t.Errorf("%s: namespace %q, want %q", o, ns, namespace)
		}
		if o.meta().GetLabels()["app.kubernetes.io/part-of"] != "lariat" {
			t.Errorf("%s: lacks label app.kubernetes.io/part-of=lariat", o)
		}
	}
	for _, w := range r.workloads() {
		checkPod(t, r, w, binaries)
	}
	checkGateway(t, r, production)
	checkServices(t, r)
	checkServiceMonitors(t, r)
	checkTrainRBAC(t, r)
	checkRegistry(t, r)
	if cm := r.configMapByPrefix("lariat-redis"); cm == nil {
		t.Errorf("no lariat-redis ConfigMap")
	} else if u := cm.Data["LARIAT_REDIS"]; !strings.Contains(u, "://") {
		t.Errorf("LARIAT_REDIS %q: want a redis:// URL", u)
	} else if opt, err := featurefetch.ParseRedisURL(u); err != nil {
		t.Errorf("LARIAT_REDIS: %v", err)
	} else if !opt.Cluster || len(opt.Addrs) == 0 {
		t.Errorf("LARIAT_REDIS %q: want Redis Cluster seed addresses (cluster=true)", u)
	}
	for n, c := range r.cronJobs {
		if c.Spec.ConcurrencyPolicy != batchv1.ForbidConcurrent {
			t.Errorf("CronJob %s: concurrencyPolicy %q; batch loads must not overlap", n, c.Spec.ConcurrencyPolicy)
		}
	}
}

// reporter is the part of testing.T the render checks use, so a test can
// run them on broken objects and read what they report.
type reporter interface {
	Helper()
	Errorf(format string, args ...any)
}

// varRef matches Kubernetes' $(VAR) expansion in command and args.
var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

func checkPod(t reporter, r *rendered, w workload, binaries []string) {
	t.Helper()
	spec := &w.pod.Spec
	psc := spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != nonRootUID {
		t.Errorf("%s: pod must set runAsNonRoot and runAsUser %d", w.name, nonRootUID)
	}
	if psc != nil && (psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault) {
		t.Errorf("%s: pod should use the RuntimeDefault seccomp profile", w.name)
	}
	if sa := spec.ServiceAccountName; sa != "" && r.accounts[sa] == nil {
		t.Errorf("%s: ServiceAccount %q is not rendered", w.name, sa)
	}
	if spec.ServiceAccountName == "" && (spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken) {
		t.Errorf("%s: pods without API access should not mount a service account token", w.name)
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = v
		switch {
		case v.ConfigMap != nil:
			if r.configMaps[v.ConfigMap.Name] == nil {
				t.Errorf("%s: volume %s: ConfigMap %q is not rendered", w.name, v.Name, v.ConfigMap.Name)
			}
		case v.Secret != nil:
			r.checkSecretRef(t, w.name, v.Secret.SecretName)
		case v.PersistentVolumeClaim != nil:
			if n := v.PersistentVolumeClaim.ClaimName; r.claims[n] == nil && !slices.Contains(externalClaims, n) {
				t.Errorf("%s: volume %s: PersistentVolumeClaim %q is not rendered", w.name, v.Name, n)
			}
		}
	}
	for _, c := range spec.Containers {
		where := w.name + " container " + c.Name
		if !strings.HasPrefix(c.Image, imageName+":") {
			t.Errorf("%s: image %q, want %s:TAG", where, c.Image, imageName)
		}
		if len(c.Command) == 0 || !strings.HasPrefix(c.Command[0], binDir) || !slices.Contains(binaries, strings.TrimPrefix(c.Command[0], binDir)) {
			t.Errorf("%s: command %q does not name a binary the image installs (%s{%s})", where, c.Command, binDir, strings.Join(binaries, ","))
		}
		sc := c.SecurityContext
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
			sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
			t.Errorf("%s: securityContext must forbid privilege escalation, make the root filesystem read-only and drop ALL capabilities", where)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("%s: needs cpu and memory requests and a memory limit", where)
		}
		env := map[string]bool{}
		for _, e := range c.Env {
			env[e.Name] = true
			if e.ValueFrom == nil {
				continue
			}
			if ref := e.ValueFrom.ConfigMapKeyRef; ref != nil {
				if cm := r.configMaps[ref.Name]; cm == nil {
					t.Errorf("%s: env %s: ConfigMap %q is not rendered", where, e.Name, ref.Name)
				} else if _, ok := cm.Data[ref.Key]; !ok {
					t.Errorf("%s: env %s: ConfigMap %q has no key %q", where, e.Name, ref.Name, ref.Key)
				}
			}
			if ref := e.ValueFrom.SecretKeyRef; ref != nil {
				if ref.Optional != nil && *ref.Optional && r.secrets[ref.Name] == nil {
					continue
				}
				if s := r.checkSecretRef(t, where, ref.Name); s != nil {
					if _, ok := s.StringData[ref.Key]; !ok {
						if _, ok := s.Data[ref.Key]; !ok {
							t.Errorf("%s: env %s: Secret %q has no key %q", where, e.Name, ref.Name, ref.Key)
						}
					}
				}
			}
		}
		for _, a := range slices.Concat(c.Command, c.Args) {
			for _, m := range varRef.FindAllStringSubmatch(a, -1) {
				if !env[m[1]] {
					t.Errorf("%s: %q uses $(%s), which is not in its env, so Kubernetes passes it literally", where, a, m[1])
				}
			}
		}
		ports := map[string]bool{}
		for _, p := range c.Ports {
			ports[p.Name] = true
		}
		for _, p := range []*corev1.Probe{c.StartupProbe, c.ReadinessProbe, c.LivenessProbe} {
			if p == nil || p.HTTPGet == nil {
				continue
			}
			if pn := p.HTTPGet.Port.StrVal; pn != "" && !ports[pn] {
				t.Errorf("%s: probe %s uses port %q, which the container does not name", where, p.HTTPGet.Path, pn)
			}
		}
		for _, m := range c.VolumeMounts {
			if _, ok := volumes[m.Name]; !ok {
				t.Errorf("%s: mount %s has no volume", where, m.Name)
			}
		}
	}
}

// checkSecretRef returns the referenced Secret, or nil when it is not
// rendered; only the production database Secret may live outside Git.
func (r *rendered) checkSecretRef(t reporter, where, name string) *corev1.Secret {
	t.Helper()
	s := r.secrets[name]
	if s == nil && name != postgresSecret {
		t.Errorf("%s: Secret %q is not rendered", where, name)
	}
	return s
}

func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
		if a == "--"+name && i+1 < len(args) {
			return args[i+1], true
		}
	}
	return "", false
}

func checkGateway(t reporter, r *rendered, production bool) {
	t.Helper()
	d := r.deployments["lariat-gateway"]
	if d == nil {
		t.Errorf("no lariat-gateway Deployment")
		return
	}
	if d.Spec.Replicas != nil {
		t.Errorf("lariat-gateway sets spec.replicas; the HPA owns the count")
	}
	pod := &d.Spec.Template.Spec
	c := pod.Containers[0]
	if len(c.Args) == 0 || c.Args[0] != "serve" {
		t.Errorf("gateway args %q: want the serve verb first", c.Args)
	}
	for flag, want := range map[string]string{"routes": "/etc/lariat/routes", "listen": "0.0.0.0:8080", "admin-listen": "0.0.0.0:8081"} {
		if v, _ := flagValue(c.Args, flag); v != want {
			t.Errorf("gateway --%s=%q, want %q", flag, v, want)
		}
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["http"] != 8080 || ports["admin"] != 8081 {
		t.Errorf("gateway ports %v, want http 8080 and admin 8081", ports)
	}
	for _, p := range []struct {
		probe *corev1.Probe
		path  string
	}{{c.ReadinessProbe, "/readyz"}, {c.LivenessProbe, "/healthz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port.String() != "admin" {
			t.Errorf("gateway needs an HTTP probe on admin %s", p.path)
		}
	}
	var mounted bool
	for _, m := range c.VolumeMounts {
		if m.MountPath != "/etc/lariat/routes" {
			continue
		}
		mounted = true
		if m.SubPath != "" || m.SubPathExpr != "" {
			t.Errorf("routes are mounted with subPath; updates would never reach the pod")
		}
		for _, v := range pod.Volumes {
			if v.Name == m.Name && (v.ConfigMap == nil || v.ConfigMap.Name != "lariat-routes") {
				t.Errorf("routes volume %s is not the lariat-routes ConfigMap", v.Name)
			}
		}
	}
	if !mounted {
		t.Errorf("gateway does not mount /etc/lariat/routes")
	}
	podLabels := labels.Set(d.Spec.Template.Labels)
	spread := map[string]corev1.UnsatisfiableConstraintAction{}
	for _, tsc := range pod.TopologySpreadConstraints {
		if !selects(t, tsc.LabelSelector, podLabels) {
			t.Errorf("topology spread over %s does not select the gateway pods", tsc.TopologyKey)
		}
		if _, dup := spread[tsc.TopologyKey]; dup {
			t.Errorf("two topology spread constraints over %s", tsc.TopologyKey)
		}
		spread[tsc.TopologyKey] = tsc.WhenUnsatisfiable
	}
	if spread["topology.kubernetes.io/zone"] == "" || spread["kubernetes.io/hostname"] == "" {
		t.Errorf("gateway pods should spread over zones and nodes; constraints: %v", spread)
	}
	if production && spread["topology.kubernetes.io/zone"] != corev1.DoNotSchedule {
		t.Errorf("production gateways must spread over zones strictly (DoNotSchedule), got %q", spread["topology.kubernetes.io/zone"])
	}
	hpa := r.hpas["lariat-gateway"]
	switch {
	case hpa == nil:
		t.Errorf("no lariat-gateway HorizontalPodAutoscaler")
	case hpa.Spec.ScaleTargetRef.Kind != "Deployment" || r.deployments[hpa.Spec.ScaleTargetRef.Name] != d:
		t.Errorf("HPA targets %s %s, not the gateway", hpa.Spec.ScaleTargetRef.Kind, hpa.Spec.ScaleTargetRef.Name)
	case hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas < 2 || hpa.Spec.MaxReplicas < *hpa.Spec.MinReplicas:
		t.Errorf("HPA replicas min %v max %d: want 2 <= min <= max", hpa.Spec.MinReplicas, hpa.Spec.MaxReplicas)
	}
	pdb := r.pdbs["lariat-gateway"]
	if pdb == nil || !selects(t, pdb.Spec.Selector, podLabels) {
		t.Errorf("no PodDisruptionBudget selecting the gateway pods")
	}
	svc := r.services["lariat-gateway"]
	if svc == nil {
		t.Errorf("no lariat-gateway Service")
		return
	}
	for _, p := range svc.Spec.Ports {
		if p.TargetPort.String() == "admin" || p.TargetPort.IntValue() == 8081 || p.Port == 8081 {
			t.Errorf("the traffic Service exposes the admin port (%s)", p.Name)
		}
	}
}

func selects(t reporter, ls *metav1.LabelSelector, set labels.Set) bool {
	t.Helper()
	if ls == nil {
		return false
	}
	s, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		t.Errorf("selector %v: %v", ls, err)
		return false
	}
	return !s.Empty() && s.Matches(set)
}

// checkServices checks that each Service selects pods and targets ports
// those pods name.
func checkServices(t reporter, r *rendered) {
	t.Helper()
	for n, s := range r.services {
		sel := labels.SelectorFromSet(s.Spec.Selector)
		var pods []*corev1.PodTemplateSpec
		for _, d := range r.deployments {
			if !sel.Empty() && sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				pods = append(pods, &d.Spec.Template)
			}
		}
		if len(pods) == 0 {
			t.Errorf("Service %s selects no Deployment's pods", n)
			continue
		}
		for _, p := range s.Spec.Ports {
			if p.TargetPort.StrVal == "" {
				continue
			}
			for _, pod := range pods {
				found := false
				for _, c := range pod.Spec.Containers {
					for _, cp := range c.Ports {
						found = found || cp.Name == p.TargetPort.StrVal
					}
				}
				if !found {
					t.Errorf("Service %s port %s targets %q, which its pods do not name", n, p.Name, p.TargetPort.StrVal)
				}
			}
		}
	}
}

func checkServiceMonitors(t reporter, r *rendered) {
	t.Helper()
	if len(r.monitors) == 0 {
		t.Errorf("no ServiceMonitor")
	}
	gatewayScraped := false
	for _, m := range r.monitors {
		sel, _, _ := unstructured.NestedMap(m.Object, "spec", "selector")
		var ls metav1.LabelSelector
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(sel, &ls); err != nil {
			t.Errorf("ServiceMonitor %s: %v", m.GetName(), err)
			continue
		}
		eps, _, _ := unstructured.NestedSlice(m.Object, "spec", "endpoints")
		var portNames []string
		for _, e := range eps {
			if p, _ := e.(map[string]any)["port"].(string); p != "" {
				portNames = append(portNames, p)
			}
		}
		matched := 0
		for n, s := range r.services {
			if !selects(t, &ls, labels.Set(s.Labels)) {
				continue
			}
			matched++
			hasPort := false
			for _, p := range s.Spec.Ports {
				if slices.Contains(portNames, p.Name) {
					hasPort = true
					if n == "lariat-gateway-admin" && p.TargetPort.String() == "admin" {
						gatewayScraped = true
					}
				}
			}
			if !hasPort {
				t.Errorf("ServiceMonitor %s selects Service %s but none of its ports is named %q", m.GetName(), n, portNames)
			}
		}
		if matched == 0 {
			t.Errorf("ServiceMonitor %s selects no Service", m.GetName())
		}
	}
	if !gatewayScraped {
		t.Errorf("no ServiceMonitor scrapes the gateways' admin port")
	}
}

// checkTrainRBAC checks lariat-train's Role grants what submitting and
// tracking training jobs needs, bound to its ServiceAccount.
func checkTrainRBAC(t reporter, r *rendered) {
	t.Helper()
	role := r.roles["lariat-train"]
	if role == nil {
		t.Errorf("no lariat-train Role")
		return
	}
	allowed := func(group, resource, verb string) bool {
		for _, rule := range role.Rules {
			if slices.Contains(rule.APIGroups, group) && slices.Contains(rule.Resources, resource) && slices.Contains(rule.Verbs, verb) {
				return true
			}
		}
		return false
	}
	for _, gr := range [][2]string{{"batch", "jobs"}, {"kubeflow.org", "pytorchjobs"}, {"kubeflow.org", "tfjobs"}} {
		for _, verb := range []string{"create", "get", "list", "watch", "delete"} {
			if !allowed(gr[0], gr[1], verb) {
				t.Errorf("Role lariat-train cannot %s %s.%s", verb, gr[1], gr[0])
			}
		}
	}
	if !allowed("", "pods/log", "get") {
		t.Errorf("Role lariat-train cannot read pod logs")
	}
	for _, rule := range role.Rules {
		if slices.Contains(rule.Verbs, "*") || slices.Contains(rule.Resources, "*") || slices.Contains(rule.APIGroups, "*") {
			t.Errorf("Role lariat-train uses a wildcard: %+v", rule)
		}
	}
	b := r.bindings["lariat-train"]
	if b == nil || b.RoleRef.Kind != "Role" || b.RoleRef.Name != role.Name {
		t.Errorf("no RoleBinding of Role lariat-train")
		return
	}
	bound := false
	for _, s := range b.Subjects {
		bound = bound || (s.Kind == "ServiceAccount" && s.Name == "lariat-train" && s.Namespace == namespace && r.accounts[s.Name] != nil)
	}
	if !bound {
		t.Errorf("RoleBinding lariat-train does not bind ServiceAccount %s/lariat-train", namespace)
	}
	d := r.deployments["lariat-train"]
	if d == nil || d.Spec.Template.Spec.ServiceAccountName != "lariat-train" {
		t.Errorf("lariat-train Deployment does not run as the lariat-train ServiceAccount")
	}
}

// checkRegistry checks the registry's store flag is a PostgreSQL URL built
// from the Secret, with the password kept out of the arguments.
func checkRegistry(t reporter, r *rendered) {
	t.Helper()
	d := r.deployments["lariat-registry"]
	if d == nil {
		t.Errorf("no lariat-registry Deployment")
		return
	}
	c := d.Spec.Template.Spec.Containers[0]
	store, ok := flagValue(c.Args, "store")
	if !ok || !strings.HasPrefix(store, "postgres://") {
		t.Errorf("registry --store=%q, want a postgres:// URL", store)
	}
	fromSecret := map[string]bool{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name == postgresSecret {
			fromSecret[e.Name] = true
		}
	}
	for _, m := range varRef.FindAllStringSubmatch(store, -1) {
		if !fromSecret[m[1]] {
			t.Errorf("registry --store uses $(%s), which does not come from Secret %s", m[1], postgresSecret)
		}
	}
	if !fromSecret["PGPASSWORD"] {
		t.Errorf("registry does not take PGPASSWORD from Secret %s", postgresSecret)
	}
	if strings.Contains(strings.Join(c.Args, " "), "PASSWORD") {
		t.Errorf("registry arguments carry the database password: %q", c.Args)
	}
}

// recorder collects what the render checks report.
type recorder struct{ msgs []string }

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.msgs = append(r.msgs, fmt.Sprintf(format, args...))
}

// TestRenderChecksCatchMistakes breaks one thing at a time in the rendered
// base and checks the render checks report it.
func TestRenderChecksCatchMistakes(t *testing.T) {
	binaries := cmdBinaries(t)
	f := func(name string, mutate func(r *rendered), want string) {
		t.Helper()
		r := index(t, build(t, baseDir))
		mutate(r)
		var rec recorder
		checkRendered(&rec, r, binaries, false)
		for _, m := range rec.msgs {
			if strings.Contains(m, want) {
				return
			}
		}
		t.Errorf("%s: nothing reported containing %q; reports: %q", name, want, rec.msgs)
	}
	gw := func(r *rendered) *corev1.Container {
		return &r.deployments["lariat-gateway"].Spec.Template.Spec.Containers[0]
	}
	f("subPath mount", func(r *rendered) { gw(r).VolumeMounts[0].SubPath = "allocate.yaml" }, "subPath")
	f("admin port on the traffic Service", func(r *rendered) {
		svc := r.services["lariat-gateway"]
		svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{Name: "admin", Port: 8081, TargetPort: intstr.FromString("admin")})
	}, "exposes the admin port")
	f("root user", func(r *rendered) {
		var root int64
		r.deployments["lariat-registry"].Spec.Template.Spec.SecurityContext.RunAsUser = &root
	}, "runAsUser 65532")
	f("writable root filesystem", func(r *rendered) {
		no := false
		r.deployments["lariat-ingest"].Spec.Template.Spec.Containers[0].SecurityContext.ReadOnlyRootFilesystem = &no
	}, "read-only")
	f("capabilities kept", func(r *rendered) { gw(r).SecurityContext.Capabilities = nil }, "drop ALL")
	f("no memory limit", func(r *rendered) { delete(gw(r).Resources.Limits, corev1.ResourceMemory) }, "memory limit")
	f("undefined $(VAR)", func(r *rendered) { gw(r).Args = append(gw(r).Args, "--redis=$(REDIS_URL)") }, "$(REDIS_URL), which is not in its env")
	f("password in args", func(r *rendered) {
		c := &r.deployments["lariat-registry"].Spec.Template.Spec.Containers[0]
		for i, a := range c.Args {
			if strings.HasPrefix(a, "--store=") {
				c.Args[i] = "--store=postgres://$(PGUSER):$(PGPASSWORD)@$(PGHOST)/$(PGDATABASE)"
			}
		}
	}, "carry the database password")
	f("missing ConfigMap", func(r *rendered) { delete(r.configMaps, "lariat-routes") }, `ConfigMap "lariat-routes" is not rendered`)
	f("probe on an unnamed port", func(r *rendered) { gw(r).ReadinessProbe.HTTPGet.Port = intstr.FromString("status") }, `uses port "status"`)
	f("binary not in the image", func(r *rendered) { gw(r).Command = []string{binDir + "lariat-gw"} }, "does not name a binary")
	f("replicas fixed", func(r *rendered) {
		n := int32(3)
		r.deployments["lariat-gateway"].Spec.Replicas = &n
	}, "the HPA owns the count")
	f("HPA on another Deployment", func(r *rendered) { r.hpas["lariat-gateway"].Spec.ScaleTargetRef.Name = "lariat-registry" }, "HPA targets")
	f("no PDB", func(r *rendered) { delete(r.pdbs, "lariat-gateway") }, "no PodDisruptionBudget")
	f("Service selecting nothing", func(r *rendered) { r.services["lariat-registry"].Spec.Selector = map[string]string{"app": "nothing"} }, "selects no Deployment")
	f("Service port name", func(r *rendered) {
		r.services["lariat-registry"].Spec.Ports[0].TargetPort = intstr.FromString("api")
	}, `targets "api"`)
	f("ServiceMonitor port name", func(r *rendered) {
		m := r.monitors[0]
		eps, _, _ := unstructured.NestedSlice(m.Object, "spec", "endpoints")
		for _, e := range eps {
			e.(map[string]any)["port"] = "metrics"
		}
		_ = unstructured.SetNestedSlice(m.Object, eps, "spec", "endpoints")
	}, "none of its ports is named")
	f("RBAC verb missing", func(r *rendered) {
		for i := range r.roles["lariat-train"].Rules {
			rule := &r.roles["lariat-train"].Rules[i]
			rule.Verbs = slices.DeleteFunc(rule.Verbs, func(v string) bool { return v == "delete" })
		}
	}, "cannot delete jobs.batch")
	f("RBAC wildcard", func(r *rendered) { r.roles["lariat-train"].Rules[0].Verbs = []string{"*"} }, "wildcard")
	f("wrong namespace", func(r *rendered) { r.services["lariat-ingest"].Namespace = "default" }, `namespace "default"`)
	f("Redis not a cluster", func(r *rendered) {
		r.configMapByPrefix("lariat-redis").Data["LARIAT_REDIS"] = "redis://redis:6379"
	}, "cluster=true")
}

// TestRoutesConfigMapValidates extracts the route files from the rendered
// ConfigMap and loads them with the code `lariat validate` runs.
func TestRoutesConfigMapValidates(t *testing.T) {
	for _, dir := range []string{baseDir, overlayDir} {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			r := index(t, build(t, dir))
			routes := r.configMaps["lariat-routes"]
			if routes == nil || len(routes.Data) == 0 {
				t.Fatal("no lariat-routes ConfigMap with route files")
			}
			env := tasks.NewEnv(nil)
			if cm := r.configMapByPrefix("lariat-feature-views"); cm != nil {
				for name, data := range cm.Data {
					views, err := featurefetch.ParseViews(name, []byte(data))
					if err != nil {
						t.Fatalf("feature views: %v", err)
					}
					tasks.FeatureStore.Provide(env, &tasks.FeatureEnv{Views: views, Store: featurefetch.NewMemoryStore()})
				}
			}
			tmp := t.TempDir()
			var files []string
			for name, data := range routes.Data {
				p := filepath.Join(tmp, name)
				if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
				files = append(files, p)
			}
			sort.Strings(files)
			table, errs := router.LoadFiles(files, env)
			if len(errs) > 0 {
				t.Fatalf("routes in ConfigMap lariat-routes do not validate:\n%s", errs.Error())
			}
			if len(table.Plans()) != len(files) {
				t.Errorf("%d route files gave %d routes", len(files), len(table.Plans()))
			}
		})
	}
}

// TestRoutesThroughConfigMapVolume lays out a folder the way the kubelet
// projects a ConfigMap volume (files are symlinks through ..data, and an
// update swaps ..data atomically) and checks the gateway's loader reads the
// routes through it, before and after an update.
func TestRoutesThroughConfigMapVolume(t *testing.T) {
	dir := t.TempDir()
	route := func(endpoint string) string {
		return "name: r\nendpoint: " + endpoint + "\ntimeout: 1s\ntasks:\n  a:\n    type: http\n    inputs: {address: http://model.invalid/predict}\n    output: {path: response.body}\n"
	}
	publish := func(version, endpoint string) {
		t.Helper()
		ts := filepath.Join(dir, "..2026_01_01_00_00_0"+version)
		if err := os.Mkdir(ts, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(ts, "r.yaml"), []byte(route(endpoint)), 0o644); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Lstat(filepath.Join(dir, "r.yaml")); err != nil {
			if err := os.Symlink(filepath.Join("..data", "r.yaml"), filepath.Join(dir, "r.yaml")); err != nil {
				t.Fatal(err)
			}
		}
	}
	f := func(want string) {
		t.Helper()
		table, errs := router.LoadDir(dir, tasks.NewEnv(nil))
		if len(errs) > 0 {
			t.Fatalf("load: %s", errs.Error())
		}
		if len(table.Plans()) != 1 || table.Plans()[0].Endpoint() != want {
			t.Fatalf("loaded %d routes; want one serving %s", len(table.Plans()), want)
		}
	}
	publish("1", "/v1/a")
	f("/v1/a")
	publish("2", "/v1/b")
	f("/v1/b")
}

// helpFlag matches a flag in the output of a flag.FlagSet's PrintDefaults.
var helpFlag = regexp.MustCompile(`(?m)^  -([A-Za-z0-9][A-Za-z0-9_.-]*)`)

// TestManifestFlagsExist builds the binaries the image holds and checks that
// every flag the manifests and the Dockerfile's default command pass exists
// in the verb it is passed to, so a renamed flag cannot crash-loop a pod.
func TestManifestFlagsExist(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every binary")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin := testbin.All(t, t.TempDir())
	known := map[string]map[string]bool{}
	flagsOf := func(binary, verb string) map[string]bool {
		key := binary + " " + verb
		if fl, ok := known[key]; ok {
			return fl
		}
		out, _ := exec.CommandContext(ctx, filepath.Join(bin, binary), verb, "-h").CombinedOutput()
		fl := map[string]bool{}
		for _, m := range helpFlag.FindAllStringSubmatch(string(out), -1) {
			fl[m[1]] = true
		}
		if len(fl) == 0 {
			t.Errorf("%s -h lists no flags:\n%s", key, out)
		}
		known[key] = fl
		return fl
	}
	check := func(where string, command, args []string) {
		t.Helper()
		if len(command) == 0 || len(args) == 0 {
			t.Errorf("%s: want a binary and a verb, got %q %q", where, command, args)
			return
		}
		binary, verb := filepath.Base(command[0]), args[0]
		fl := flagsOf(binary, verb)
		for _, a := range args[1:] {
			if !strings.HasPrefix(a, "-") {
				continue
			}
			name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
			if !fl[name] {
				t.Errorf("%s: %s %s has no flag -%s", where, binary, verb, name)
			}
		}
	}
	for _, dir := range []string{baseDir, overlayDir} {
		r := index(t, build(t, dir))
		for _, w := range r.workloads() {
			for _, c := range w.pod.Spec.Containers {
				check(dir+": "+w.name, c.Command, c.Args)
			}
		}
	}
	data, err := os.ReadFile(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	var entrypoint, cmd []string
	for _, in := range parseDockerfile(data) {
		var dst *[]string
		switch in.cmd {
		case "ENTRYPOINT":
			dst = &entrypoint
		case "CMD":
			dst = &cmd
		default:
			continue
		}
		if err := json.Unmarshal([]byte(in.args), dst); err != nil {
			t.Errorf("Dockerfile:%d: %s is not in exec form: %v", in.line, in.cmd, err)
		}
	}
	check("Dockerfile", entrypoint, cmd)
}

// cmdBinaries lists the main packages under ../cmd: the binaries the
// Dockerfile's `go build -o /out/ ./cmd/...` produces.
func cmdBinaries(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir("../cmd")
	if err != nil {
		t.Fatal(err)
	}
	var bins []string
	fset := token.NewFileSet()
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		files, _ := filepath.Glob(filepath.Join("../cmd", e.Name(), "*.go"))
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			af, err := parser.ParseFile(fset, f, nil, parser.PackageClauseOnly)
			if err != nil {
				t.Fatal(err)
			}
			if af.Name.Name == "main" {
				bins = append(bins, e.Name())
				break
			}
		}
	}
	if len(bins) == 0 {
		t.Fatal("no main packages under ../cmd")
	}
	return bins
}

// instruction is one Dockerfile instruction with continuation lines joined.
type instruction struct {
	line int
	cmd  string // upper case
	args string
}

func parseDockerfile(data []byte) []instruction {
	var out []instruction
	var cur strings.Builder
	start := 0
	for i, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if cur.Len() > 0 && strings.HasPrefix(trimmed, "#") {
			continue // comment inside a continued instruction
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if s, ok := strings.CutSuffix(trimmed, `\`); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{line: start, cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)})
		cur.Reset()
	}
	return out
}

// TestDockerfile parses the Dockerfile lightly (no Docker engine runs the
// tests): a Go 1.26 build stage that builds every cmd/ binary statically,
// and a distroless or scratch final stage running as a non-root user.
func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	type stage struct {
		name, image string
		ins         []instruction
	}
	var stages []*stage
	for _, in := range parseDockerfile(data) {
		if in.cmd == "FROM" {
			var fields []string
			for _, f := range strings.Fields(in.args) {
				if !strings.HasPrefix(f, "--") {
					fields = append(fields, f)
				}
			}
			s := &stage{image: fields[0]}
			if len(fields) == 3 && strings.EqualFold(fields[1], "AS") {
				s.name = fields[2]
			}
			stages = append(stages, s)
			continue
		}
		if len(stages) == 0 {
			if in.cmd != "ARG" {
				t.Fatalf("Dockerfile:%d: %s before the first FROM", in.line, in.cmd)
			}
			continue
		}
		stages[len(stages)-1].ins = append(stages[len(stages)-1].ins, in)
	}
	if len(stages) < 2 {
		t.Fatalf("want a multi-stage build, got %d stage(s)", len(stages))
	}
	builder, final := stages[0], stages[len(stages)-1]
	if !strings.HasPrefix(builder.image, "golang:1.26") || builder.name == "" {
		t.Errorf("build stage %q (%s): want a named golang:1.26 stage", builder.name, builder.image)
	}
	var build string
	for _, in := range builder.ins {
		if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
			build = in.args
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags "-s -w"`, "-o /out/", "./cmd/..."} {
		if !strings.Contains(build, want) {
			t.Errorf("go build %q lacks %s", build, want)
		}
	}
	if !strings.HasPrefix(final.image, "gcr.io/distroless/static") && final.image != "scratch" {
		t.Errorf("final image %s: want distroless static or scratch", final.image)
	}
	var user, entrypoint string
	copied := false
	for _, in := range final.ins {
		switch in.cmd {
		case "USER":
			user = in.args
		case "ENTRYPOINT":
			entrypoint = in.args
		case "COPY":
			copied = copied || in.args == "--from="+builder.name+" /out/ "+binDir
		case "RUN":
			t.Errorf("Dockerfile:%d: RUN in the final stage (it has no shell)", in.line)
		}
	}
	if uid, _, _ := strings.Cut(user, ":"); uid != fmt.Sprint(nonRootUID) {
		t.Errorf("final USER %q, want %d (non-root)", user, nonRootUID)
	}
	if !copied {
		t.Errorf("final stage does not copy every built binary (COPY --from=%s /out/ %s)", builder.name, binDir)
	}
	var ep []string
	if err := json.Unmarshal([]byte(entrypoint), &ep); err != nil || len(ep) == 0 || ep[0] != binDir+"lariat" {
		t.Errorf("ENTRYPOINT %s: want exec form starting with %slariat", entrypoint, binDir)
	}
	// Every cmd/ folder ends up in the image, and the gateway is among
	// them with the prediction log's sink process, which it starts from
	// its own folder.
	bins := cmdBinaries(t)
	if !slices.Contains(bins, "lariat") || !slices.Contains(bins, "lariat-predlog") {
		t.Errorf("no cmd/lariat or cmd/lariat-predlog main package; found %q", bins)
	}
	t.Logf("image installs %s{%s}", binDir, strings.Join(bins, ","))

	ignore, err := os.ReadFile(dockerfile + ".dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"go.mod", "go.sum", "cmd/lariat/main.go", "gateway/gateway.go", "featurefetch/demo/featureviews.yaml"} {
		for line := range strings.Lines(string(ignore)) {
			pat := strings.TrimSpace(line)
			if pat == "" || strings.HasPrefix(pat, "#") {
				continue
			}
			if ignored(pat, p) {
				t.Errorf("Dockerfile.dockerignore pattern %q drops %s, which the build needs", pat, p)
			}
		}
	}
}

// ignored reports whether a .dockerignore pattern matches path (enough of
// the syntax for the patterns used here: a leading **/ matches any folder,
// and a folder pattern covers everything below it).
func ignored(pattern, path string) bool {
	if rest, ok := strings.CutPrefix(pattern, "**/"); ok {
		m, _ := filepath.Match(rest, filepath.Base(path))
		return m
	}
	if m, _ := filepath.Match(pattern, path); m {
		return true
	}
	return strings.HasPrefix(path, strings.TrimSuffix(pattern, "/")+"/")
}

// Grafana dashboard JSON, the parts the tests read.
type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

func loadDashboard(t *testing.T) *dashboard {
	t.Helper()
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return &d
}

// query is one PromQL expression of the dashboard and where it is used.
type query struct {
	where string
	expr  string
}

// labelValues matches a Grafana label_values(selector, label) variable query.
var labelValues = regexp.MustCompile(`^\s*label_values\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$`)

// queries returns the PromQL expressions of every panel and variable.
func (d *dashboard) queries(t *testing.T) []query {
	t.Helper()
	var qs []query
	var walk func(ps []panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				qs = append(qs, query{fmt.Sprintf("panel %q %s", p.Title, tg.RefID), tg.Expr})
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q string
		if err := json.Unmarshal(v.Query, &q); err != nil {
			var obj struct {
				Query string `json:"query"`
			}
			if err := json.Unmarshal(v.Query, &obj); err != nil {
				t.Fatalf("variable %s: query %s: %v", v.Name, v.Query, err)
			}
			q = obj.Query
		}
		if m := labelValues.FindStringSubmatch(q); m != nil {
			q = m[1]
		}
		qs = append(qs, query{"variable $" + v.Name, q})
	}
	return qs
}

// TestDashboardStructure checks the dashboard is well-formed: unique panel
// ids, a Prometheus data source from the variable, targets with queries,
// balanced expressions that use only defined variables, panels inside the
// 24-column grid.
func TestDashboardStructure(t *testing.T) {
	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" || d.SchemaVersion == 0 {
		t.Errorf("dashboard needs uid, title and schemaVersion")
	}
	vars := map[string]bool{"__rate_interval": true, "__interval": true, "__range": true}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
	}
	if !vars["datasource"] {
		t.Errorf("no datasource variable")
	}
	ids := map[int]string{}
	var walk func(ps []panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if prev, dup := ids[p.ID]; dup || p.ID == 0 {
				t.Errorf("panel %q: id %d missing or used by %q", p.Title, p.ID, prev)
			}
			ids[p.ID] = p.Title
			if p.Title == "" {
				t.Errorf("panel %d has no title", p.ID)
			}
			if p.GridPos.W <= 0 || p.GridPos.X < 0 || p.GridPos.X+p.GridPos.W > 24 {
				t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, p.GridPos)
			}
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if p.Datasource == nil || p.Datasource.Type != "prometheus" || p.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q: datasource %+v, want prometheus ${datasource}", p.Title, p.Datasource)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no queries", p.Title)
			}
			refs := map[string]bool{}
			for _, tg := range p.Targets {
				if tg.RefID == "" || refs[tg.RefID] {
					t.Errorf("panel %q: refId %q missing or repeated", p.Title, tg.RefID)
				}
				refs[tg.RefID] = true
			}
		}
	}
	walk(d.Panels)
	for _, q := range d.queries(t) {
		if strings.TrimSpace(q.expr) == "" {
			t.Errorf("%s: empty query", q.where)
			continue
		}
		if err := balanced(q.expr); err != nil {
			t.Errorf("%s: %v in %s", q.where, err, q.expr)
		}
		for _, m := range regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)`).FindAllStringSubmatch(q.expr, -1) {
			if !vars[m[1]] {
				t.Errorf("%s: undefined variable $%s", q.where, m[1])
			}
		}
		if len(promMetricNames(q.expr)) == 0 {
			t.Errorf("%s: no metric name in %s", q.where, q.expr)
		}
	}
}

// balanced checks brackets and quotes of a PromQL expression pair up.
func balanced(expr string) error {
	var stack []byte
	pairs := map[byte]byte{')': '(', ']': '[', '}': '{'}
	for i := 0; i < len(expr); i++ {
		switch c := expr[i]; c {
		case '"', '\'', '`':
			j := i + 1
			for j < len(expr) && expr[j] != c {
				if expr[j] == '\\' && c != '`' {
					j++
				}
				j++
			}
			if j >= len(expr) {
				return fmt.Errorf("unterminated string at %d", i)
			}
			i = j
		case '(', '[', '{':
			stack = append(stack, c)
		case ')', ']', '}':
			if len(stack) == 0 || stack[len(stack)-1] != pairs[c] {
				return fmt.Errorf("unbalanced %q at %d", c, i)
			}
			stack = stack[:len(stack)-1]
		}
	}
	if len(stack) > 0 {
		return fmt.Errorf("unclosed %q", stack[len(stack)-1])
	}
	return nil
}

// promKeywords are PromQL words that look like metric names.
var promKeywords = []string{"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset", "inf", "nan", "atan2"}

// promMetricNames returns the metric names an expression selects: the
// identifiers left once strings, label matchers, ranges, grouping clauses
// and function calls are set aside.
func promMetricNames(expr string) []string {
	var names []string
	isStart := func(c byte) bool { return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	isPart := func(c byte) bool { return isStart(c) || c >= '0' && c <= '9' }
	skipTo := func(i int, open, close byte) int {
		depth := 0
		for ; i < len(expr); i++ {
			switch expr[i] {
			case '"', '\'', '`':
				q := expr[i]
				for i++; i < len(expr) && expr[i] != q; i++ {
					if expr[i] == '\\' && q != '`' {
						i++
					}
				}
			case open:
				depth++
			case close:
				if depth--; depth == 0 {
					return i
				}
			}
		}
		return i
	}
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '{':
			i = skipTo(i, '{', '}') + 1
		case c == '[':
			i = skipTo(i, '[', ']') + 1
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			for j < len(expr) && expr[j] != c {
				if expr[j] == '\\' && c != '`' {
					j++
				}
				j++
			}
			i = j + 1
		case c >= '0' && c <= '9' || c == '.':
			for i < len(expr) && (isPart(expr[i]) || expr[i] == '.') {
				i++
			}
		case c == '$':
			for i++; i < len(expr) && (isPart(expr[i]) || expr[i] == '{' || expr[i] == '}'); i++ {
			}
		case isStart(c):
			j := i
			for j < len(expr) && isPart(expr[j]) {
				j++
			}
			word := expr[i:j]
			k := j
			for k < len(expr) && expr[k] == ' ' {
				k++
			}
			nextParen := k < len(expr) && expr[k] == '('
			// An aggregation may put its grouping first: sum by (x) (...).
			nextWord := expr[k:]
			if e := strings.IndexFunc(nextWord, func(r rune) bool { return r > 127 || !isPart(byte(r)) }); e >= 0 {
				nextWord = nextWord[:e]
			}
			if nextWord == "by" || nextWord == "without" {
				nextParen = true
			}
			switch {
			case slices.Contains([]string{"by", "without", "on", "ignoring", "group_left", "group_right"}, word) && nextParen:
				i = skipTo(k, '(', ')') + 1
				continue
			case nextParen, slices.Contains(promKeywords, strings.ToLower(word)):
			default:
				if !slices.Contains(names, word) {
					names = append(names, word)
				}
			}
			i = j
		default:
			i++
		}
	}
	return names
}

func TestPromMetricNames(t *testing.T) {
	f := func(expr string, want ...string) {
		t.Helper()
		got := promMetricNames(expr)
		if !slices.Equal(got, want) {
			t.Errorf("promMetricNames(%s) = %q, want %q", expr, got, want)
		}
	}
	f(`lariat_routes`, "lariat_routes")
	f(`sum by (route) (rate(lariat_requests_total{namespace="$namespace", route=~"$route", status=~"5.."}[$__rate_interval]))`, "lariat_requests_total")
	f(`histogram_quantile(0.99, sum by (route, le) (rate(lariat_request_duration_seconds_bucket{route=~"a|b"}[5m])))`, "lariat_request_duration_seconds_bucket")
	f(`sum(rate(a_total{x="}"}[1m])) / sum(rate(b_total[1m])) > 0.5`, "a_total", "b_total")
	f(`max without (pod) (lariat_breaker_open) or on (upstream) vector(0)`, "lariat_breaker_open")
	f(`count(lariat_config_last_reload_successful{job="x"} == 0) offset 5m`, "lariat_config_last_reload_successful")
	f(`sum(rate(x_total[5m])) by (route) * 1e3`, "x_total")
	f(`process_resident_memory_bytes{pod=~"$pod"} / ignoring (le) go_memstats_heap_inuse_bytes`, "process_resident_memory_bytes", "go_memstats_heap_inuse_bytes")
	f(`vector(1)`)
}

// TestDashboardMetricsExist starts a real gateway with a route that calls a
// healthy and a failing fake model, sends requests (some fail), scrapes the
// admin /metrics and checks every metric the dashboard queries is exported.
func TestDashboardMetricsExist(t *testing.T) {
	d := loadDashboard(t)
	want := map[string][]string{}
	for _, q := range d.queries(t) {
		for _, n := range promMetricNames(q.expr) {
			want[n] = append(want[n], q.where)
		}
	}

	good := upstreamtest.Start(t, upstreamtest.JSON(`{"ranking":[3,1,2]}`))
	bad := upstreamtest.Start(t, upstreamtest.Status(fasthttp.StatusServiceUnavailable))
	v2 := upstreamtest.Start(t, zeroScores)
	dir := t.TempDir()
	routes := map[string]string{
		"mixed.yaml": `name: mixed
endpoint: /v1/mixed
timeout: 2s
tasks:
  rank:
    type: http
    inputs:
      address: ` + good.URL("/predict") + `
      timeout: 1s
      body: '{"drivers": {{ .request.drivers }}}'
    output: {path: response.body.ranking, from: ranking}
  fraud:
    type: http
    inputs:
      address: ` + bad.URL("/predict") + `
      timeout: 1s
      retries: 1
      backoff: {base: 1ms, max: 1ms}
      breaker: {failures: 3, open_for: 1m}
    output: {path: response.body.fraud}
    on_error:
      default: {score: null}
`,
		"failing.yaml": `name: failing
endpoint: /v1/failing
timeout: 2s
tasks:
  score:
    type: http
    inputs:
      address: ` + bad.URL("/score") + `
      timeout: 1s
      breaker: {failures: 2, open_for: 1m}
    output: {path: response.body}
`,
		"model.yaml": `name: model
endpoint: /v1/model
timeout: 2s
tasks:
  eta:
    type: http
    inputs:
      model: eta@champion
      timeout: 1s
    output: {path: response.body}
`,
		"batched.yaml": `name: batched
endpoint: /v1/batched
timeout: 2s
tasks:
  score:
    type: infer
    inputs:
      address: ` + v2.URL("") + `
      model_name: ranker
      timeout: 1s
      inputs:
        - {name: ids, datatype: INT64, shape: [-1], from: '{{ .request.ids }}'}
      outputs: [scores]
      batch: {max_size: 8, max_wait: 1ms}
    output: {path: response.body}
`,
		"broken.yaml": "name: broken\nendpoint: /v1/broken\ntasks:\n  a:\n    type: nosuchkind\n",
	}
	for name, y := range routes {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(y), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	env := tasks.NewEnv(nil)
	tasks.ModelRegistry.Provide(env, startRegistry(t, good.URL("/v2/models/eta/infer")))
	g := gateway.New(gateway.Options{RoutesDir: dir, Env: env, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	// broken.yaml is rejected alone; the reload is then reported failed.
	if errs := g.Load(); len(errs) != 1 || !strings.Contains(errs[0], "broken.yaml") {
		t.Fatalf("route problems %q: want one, in broken.yaml", errs)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	aln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(ln)       //nolint:errcheck // returns at Shutdown.
	go g.ServeAdmin(aln) //nolint:errcheck // returns at Shutdown.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = g.Shutdown(ctx)
	})

	client := &http.Client{Timeout: 10 * time.Second}
	call := func(path, body string) int {
		t.Helper()
		resp, err := client.Post("http://"+ln.Addr().String()+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode
	}
	for range 3 {
		if s := call("/v1/mixed", `{"drivers":[1,2,3]}`); s != http.StatusOK {
			t.Fatalf("mixed route answered %d, want 200 with the fraud default", s)
		}
	}
	for range 3 {
		if s := call("/v1/failing", `{}`); s < 500 {
			t.Fatalf("failing route answered %d, want a 5xx", s)
		}
	}
	if s := call("/v1/model", `{}`); s != http.StatusOK {
		t.Fatalf("model route answered %d, want 200", s)
	}
	if s := call("/v1/batched", `{"ids":[1,2,3]}`); s != http.StatusOK {
		t.Fatalf("batched route answered %d, want 200", s)
	}
	if s := call("/v1/nowhere", `{}`); s != http.StatusNotFound {
		t.Fatalf("unknown path answered %d, want 404", s)
	}

	resp, err := client.Get("http://" + aln.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	if err := promexpo.Check(string(body)); err != nil {
		t.Errorf("GET /metrics: %v", err)
	}
	exported := map[string]bool{}
	// leBuckets holds the _bucket series with Prometheus le buckets, the only
	// ones histogram_quantile can read (VictoriaMetrics vmrange buckets
	// are not).
	leBuckets := map[string]bool{}
	for line := range strings.Lines(string(body)) {
		if line = strings.TrimSpace(line); line == "" || line[0] == '#' {
			continue
		}
		name := line[:strings.IndexAny(line+" ", "{ ")]
		exported[name] = true
		if strings.HasSuffix(name, "_bucket") && strings.Contains(line, `le="`) && !strings.Contains(line, `vmrange="`) {
			leBuckets[name] = true
		}
	}
	for _, q := range d.queries(t) {
		if !strings.Contains(q.expr, "histogram_quantile") {
			continue
		}
		for _, n := range promMetricNames(q.expr) {
			if exported[n] && !leBuckets[n] {
				t.Errorf("%s: histogram_quantile over %s, which has no le buckets", q.where, n)
			}
		}
	}
	var missing []string
	for name, where := range want {
		if !exported[name] {
			missing = append(missing, fmt.Sprintf("%s (used by %s)", name, strings.Join(where, "; ")))
		}
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("the dashboard queries %s, which the gateway does not export", m)
	}
	var unused []string
	for name := range exported {
		family := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
		if strings.HasPrefix(name, "lariat_") && want[name] == nil && want[family+"_bucket"] == nil {
			unused = append(unused, name)
		}
	}
	sort.Strings(unused)
	if len(unused) > 0 {
		t.Logf("gateway metrics no panel shows: %s", strings.Join(unused, ", "))
	}
	if len(want) < 10 {
		t.Errorf("the dashboard queries only %d metrics", len(want))
	}
}

// zeroScores answers an Open Inference Protocol V2 call with a scores
// output of one zero per row of the first input.
func zeroScores(_ int64, rc *fasthttp.RequestCtx) {
	var req struct {
		Inputs []struct {
			Shape []int `json:"shape"`
		} `json:"inputs"`
	}
	if err := json.Unmarshal(rc.PostBody(), &req); err != nil || len(req.Inputs) == 0 || len(req.Inputs[0].Shape) == 0 {
		rc.SetStatusCode(fasthttp.StatusBadRequest)
		return
	}
	n := req.Inputs[0].Shape[0]
	rc.SetContentType("application/json")
	fmt.Fprintf(rc, `{"model_name":"ranker","outputs":[{"name":"scores","datatype":"FP32","shape":[%d],"data":[%s]}]}`,
		n, strings.TrimSuffix(strings.Repeat("0,", n), ","))
}

// startRegistry runs a real model registry (bbolt store) on 127.0.0.1 with
// model eta, alias champion pointing at a version served at endpoint, and
// returns the resolver the gateway uses, as `lariat serve --registry` does.
func startRegistry(t *testing.T, endpoint string) gateway.RegistryModels {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := registry.NewClient(registrytest.Start(t), &http.Client{Timeout: 5 * time.Second})
	if _, err := client.CreateModel(ctx, registry.CreateModelRequest{Name: "eta"}); err != nil {
		t.Fatal(err)
	}
	v, err := client.CreateVersion(ctx, registry.CreateVersionRequest{Name: "eta", Source: "s3://models/eta/1", ServingEndpoint: endpoint})
	if err != nil {
		t.Fatal(err)
	}
	if err := client.SetAlias(ctx, "eta", "champion", v.Version); err != nil {
		t.Fatal(err)
	}
	res := registry.NewResolver(client, registry.ResolverOptions{Interval: time.Hour})
	t.Cleanup(res.Stop)
	return gateway.RegistryModels{R: res}
}
