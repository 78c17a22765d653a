package training

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/lariat-gw/lariat/internal/yamlstrict"
	"github.com/lariat-gw/lariat/registry"
)

// JobSpec describes one training job. It is decoded strictly from YAML or JSON by
// ParseJobSpec: unknown keys are errors.
type JobSpec struct {
	// Name names the job; job ids are the name plus a random suffix. Lowercase
	// letters, digits and '-', starting and ending with a letter or digit, at most
	// 40 characters (it becomes a Kubernetes object name).
	Name string `yaml:"name" json:"name"`
	// Image is the container image (required by the Kubernetes backends).
	Image string `yaml:"image" json:"image,omitempty"`
	// Command is the program and its leading arguments. The local backend
	// requires it; in containers it replaces the image's entrypoint when set.
	Command []string `yaml:"command" json:"command,omitempty"`
	// Args follow Command. $(NAME) references the job's environment.
	Args []string `yaml:"args" json:"args,omitempty"`
	// Env adds environment variables. Names starting with LARIAT_ are reserved.
	Env map[string]string `yaml:"env" json:"env,omitempty"`
	// WorkDir is the working directory of the process (local backend) or
	// container.
	WorkDir string `yaml:"workdir" json:"workdir,omitempty"`
	// Resources are the container's CPU, memory and GPUs (Kubernetes backends;
	// the local backend ignores them).
	Resources Resources `yaml:"resources" json:"resources"`
	// Hyperparameters are passed as LARIAT_HP_<NAME> (text) and
	// LARIAT_HYPERPARAMETERS (a JSON object, values with their types), and
	// registered as the model version's params.
	Hyperparameters map[string]Hyperparameter `yaml:"hyperparameters" json:"hyperparameters,omitempty"`
	// Inputs name the training data.
	Inputs Inputs `yaml:"inputs" json:"inputs"`
	// Outputs say where the job writes its artifact and metrics.
	Outputs Outputs `yaml:"outputs" json:"outputs"`
	// Register, when set, registers the trained model in the registry.
	Register *Register `yaml:"register" json:"register,omitempty"`
	// Timeout bounds the job's run time (Kubernetes activeDeadlineSeconds). 0 means
	// no limit.
	Timeout Duration `yaml:"timeout" json:"timeout"`
	// Kubernetes holds settings of the kubernetes and kubeflow backends.
	Kubernetes KubernetesSpec `yaml:"kubernetes" json:"kubernetes"`
	// Kubeflow holds settings of the kubeflow backend.
	Kubeflow KubeflowSpec `yaml:"kubeflow" json:"kubeflow"`
}

// Resources are a container's compute resources; CPU and memory are set as both
// request and limit.
type Resources struct {
	// CPU is a Kubernetes quantity, e.g. "500m" or "2".
	CPU string `yaml:"cpu" json:"cpu,omitempty"`
	// Memory is a Kubernetes quantity, e.g. "4Gi".
	Memory string `yaml:"memory" json:"memory,omitempty"`
	// GPU is the number of nvidia.com/gpu devices.
	GPU int `yaml:"gpu" json:"gpu,omitempty"`
}

// Inputs name a job's training data: feature views plus an entity/label file, or a
// dataset path.
type Inputs struct {
	// FeatureViews are the feature views the model reads; they are registered as
	// the version's feature_views.
	FeatureViews []string `yaml:"feature_views" json:"feature_views,omitempty"`
	// Features optionally narrow the features read: "view:feature".
	Features []string `yaml:"features" json:"features,omitempty"`
	// Labels is the entity/label file (entity ids and labels).
	Labels string `yaml:"labels" json:"labels,omitempty"`
	// Dataset is a dataset path, for jobs that do not read the feature store.
	Dataset string `yaml:"dataset" json:"dataset,omitempty"`
	// ViewsFile is the feature-view definitions file the job reads features with.
	ViewsFile string `yaml:"views_file" json:"views_file,omitempty"`
	// OnlineStore is the Redis address or URL of the online feature store.
	OnlineStore string `yaml:"online_store" json:"online_store,omitempty"`
}

// Outputs say where a job writes its results. Paths may reference $(LARIAT_JOB_ID),
// $(LARIAT_JOB_NAME) and $(LARIAT_TRIAL).
type Outputs struct {
	// ArtifactDir is the directory the job writes its model into. Local default:
	// <state-dir>/artifacts/<job id>.
	ArtifactDir string `yaml:"artifact_dir" json:"artifact_dir,omitempty"`
	// ArtifactURI is what is registered as the version's source. Local default:
	// file:// plus ArtifactDir. Required to register from the Kubernetes backends.
	ArtifactURI string `yaml:"artifact_uri" json:"artifact_uri,omitempty"`
	// MetricsFile is the JSON object of numeric metrics the job writes. Local
	// default: <artifact_dir>/metrics.json. On Kubernetes it is the container's
	// termination message path (default /dev/termination-log), so the metrics
	// reach the sidecar through the pod status (at most 4096 bytes).
	MetricsFile string `yaml:"metrics_file" json:"metrics_file,omitempty"`
}

// Register says how a trained model is registered.
type Register struct {
	// Model is the registered model name; it is created when missing.
	Model string `yaml:"model" json:"model"`
	// ServingEndpoint is the URL the gateway sends prediction requests for the
	// version to. {model}, {version}, {job} and {trial} are replaced.
	ServingEndpoint string `yaml:"serving_endpoint" json:"serving_endpoint,omitempty"`
	// Description of the model version.
	Description string `yaml:"description" json:"description,omitempty"`
	// Tags are set on the model version.
	Tags map[string]string `yaml:"tags" json:"tags,omitempty"`
	// Aliases are pointed at the new version once it is registered.
	Aliases []string `yaml:"aliases" json:"aliases,omitempty"`
}

// KubernetesSpec holds the Kubernetes settings of a job.
type KubernetesSpec struct {
	// Namespace overrides the backend's namespace.
	Namespace string `yaml:"namespace" json:"namespace,omitempty"`
	// ServiceAccount runs the pods under this service account.
	ServiceAccount string `yaml:"service_account" json:"service_account,omitempty"`
	// BackoffLimit is the number of retries before the job fails (default 0).
	BackoffLimit *int32 `yaml:"backoff_limit" json:"backoff_limit,omitempty"`
	// TTLSecondsAfterFinished deletes finished objects after this many seconds
	// (default 86400).
	TTLSecondsAfterFinished *int32 `yaml:"ttl_seconds_after_finished" json:"ttl_seconds_after_finished,omitempty"`
	// ImagePullPolicy is Always, IfNotPresent or Never.
	ImagePullPolicy string `yaml:"image_pull_policy" json:"image_pull_policy,omitempty"`
	// NodeSelector constrains the pods' nodes.
	NodeSelector map[string]string `yaml:"node_selector" json:"node_selector,omitempty"`
	// Labels and Annotations are added to the object and its pods.
	Labels      map[string]string `yaml:"labels" json:"labels,omitempty"`
	Annotations map[string]string `yaml:"annotations" json:"annotations,omitempty"`
}

// KubeflowSpec holds the Kubeflow settings of a job.
type KubeflowSpec struct {
	// Kind is PyTorchJob (default) or TFJob.
	Kind string `yaml:"kind" json:"kind,omitempty"`
	// Workers is the number of Worker replicas besides the PyTorch Master or the
	// TensorFlow Chief.
	Workers int32 `yaml:"workers" json:"workers,omitempty"`
	// PS is the number of TensorFlow parameter servers (TFJob only).
	PS int32 `yaml:"ps" json:"ps,omitempty"`
	// CleanPodPolicy is None (default), Running or All.
	CleanPodPolicy string `yaml:"clean_pod_policy" json:"clean_pod_policy,omitempty"`
}

// Kubeflow job kinds.
const (
	KindPyTorchJob = "PyTorchJob"
	KindTFJob      = "TFJob"
)

// Duration is a time span written as a Go duration string ("90m", "2h") or a bare
// number of seconds; empty or null means zero. It is encoded in JSON as a string.
type Duration struct {
	time.Duration
}

// UnmarshalNode implements yamlstrict.Unmarshaler.
func (d *Duration) UnmarshalNode(file string, n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return yamlstrict.Errorf(yamlstrict.PosOf(file, n), "expected a duration such as \"90m\" or a number of seconds")
	}
	if n.ShortTag() == "!!null" || n.Value == "" {
		d.Duration = 0
		return nil
	}
	v, err := parseDuration(n.Value)
	if err != nil {
		return yamlstrict.Errorf(yamlstrict.PosOf(file, n), "%v", err)
	}
	d.Duration = v
	return nil
}

func parseDuration(s string) (time.Duration, error) {
	return yamlstrict.ParseDuration(s, time.Second, 365*24*time.Hour)
}

// MarshalJSON encodes d as a string ("" for zero).
func (d Duration) MarshalJSON() ([]byte, error) {
	if d.Duration == 0 {
		return []byte(`""`), nil
	}
	return json.Marshal(d.String())
}

// UnmarshalJSON accepts a duration string or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var f float64
		if json.Unmarshal(b, &f) != nil {
			return fmt.Errorf("invalid duration %s", b)
		}
		s = strconv.FormatFloat(f, 'f', -1, 64)
	}
	if s == "" {
		d.Duration = 0
		return nil
	}
	v, err := parseDuration(s)
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// ParseJobSpec decodes and validates a job spec (YAML or JSON; JSON is YAML).
// file names the source in error messages. Decoding errors carry file:line:col,
// validation errors the field path.
func ParseJobSpec(file string, data []byte) (*JobSpec, error) {
	var spec JobSpec
	if err := decodeStrict(file, data, "a job spec", &spec); err != nil {
		return nil, err
	}
	if err := spec.Validate(); err != nil {
		return nil, prefixErr(file, err)
	}
	return &spec, nil
}

// decodeStrict decodes the one YAML (or JSON) document of data into v, which
// what names in messages ("a job spec").
func decodeStrict(file string, data []byte, what string, v any) error {
	root, err := yamlstrict.Parse(file, data, what)
	if err != nil {
		return err
	}
	return yamlstrict.Decode(file, root, v)
}

// prefixErr prefixes every line of err with file.
func prefixErr(file string, err error) error {
	if file == "" {
		return err
	}
	return &specError{file: file, err: err}
}

type specError struct {
	file string
	err  error
}

func (e *specError) Error() string {
	lines := strings.Split(e.err.Error(), "\n")
	for i := range lines {
		lines[i] = e.file + ": " + lines[i]
	}
	return strings.Join(lines, "\n")
}

func (e *specError) Unwrap() error { return e.err }

var (
	jobNameRe   = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	envNameRe   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	paramNameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]*$`)
	modelNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	featureRe   = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*:[A-Za-z0-9_][A-Za-z0-9_.-]*$`)
	placeholder = regexp.MustCompile(`\{[^{}]*\}`)
)

// maxJobNameLen keeps job ids (name, '-', 6 hex digits, and for study trials
// "-t<n>") within Kubernetes' 63-character names.
const maxJobNameLen = 40

// problems collects validation errors.
type problems []error

func (p *problems) add(field, format string, args ...any) {
	*p = append(*p, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
}

func (p problems) err() error {
	return errors.Join(p...)
}

// Validate checks the spec without regard to the backend (see Backend.Check).
func (s *JobSpec) Validate() error {
	var p problems
	s.validate(&p)
	return p.err()
}

func (s *JobSpec) validate(p *problems) {
	switch {
	case s.Name == "":
		p.add("name", "is required")
	case len(s.Name) > maxJobNameLen || !jobNameRe.MatchString(s.Name):
		p.add("name", "%q must be at most %d lowercase letters, digits and '-', starting and ending with a letter or digit", s.Name, maxJobNameLen)
	}
	if s.Image == "" && len(s.Command) == 0 {
		p.add("image", "give an image, a command, or both")
	}
	for i, c := range s.Command {
		if i == 0 && c == "" {
			p.add("command[0]", "is empty")
		}
	}
	for _, k := range sortedKeys(s.Env) {
		if !envNameRe.MatchString(k) {
			p.add("env."+k, "is not a valid environment variable name")
		} else if strings.HasPrefix(k, "LARIAT_") {
			p.add("env."+k, "names starting with LARIAT_ are set by the sidecar")
		}
	}
	if _, err := hyperparameterEnv(s.Hyperparameters); err != nil {
		p.add("hyperparameters", "%v", err)
	}
	if s.Resources.CPU != "" {
		if _, err := resource.ParseQuantity(s.Resources.CPU); err != nil {
			p.add("resources.cpu", "%q is not a quantity such as \"500m\" or \"2\"", s.Resources.CPU)
		}
	}
	if s.Resources.Memory != "" {
		if _, err := resource.ParseQuantity(s.Resources.Memory); err != nil {
			p.add("resources.memory", "%q is not a quantity such as \"512Mi\" or \"4Gi\"", s.Resources.Memory)
		}
	}
	if s.Resources.GPU < 0 {
		p.add("resources.gpu", "must not be negative")
	}
	in := &s.Inputs
	if in.Labels != "" && in.Dataset != "" {
		p.add("inputs", "give either labels (with feature views) or dataset, not both")
	}
	if in.Labels != "" && len(in.FeatureViews) == 0 && len(in.Features) == 0 {
		p.add("inputs.feature_views", "a label file needs the feature views to read features from")
	}
	for i, v := range in.FeatureViews {
		if !modelNameRe.MatchString(v) {
			p.add(fmt.Sprintf("inputs.feature_views[%d]", i), "%q is not a feature view name", v)
		}
	}
	for i, f := range in.Features {
		if !featureRe.MatchString(f) {
			p.add(fmt.Sprintf("inputs.features[%d]", i), "%q is not a \"view:feature\" reference", f)
		}
	}
	if s.Register != nil {
		s.Register.validate(p)
	}
	k := &s.Kubernetes
	if k.BackoffLimit != nil && *k.BackoffLimit < 0 {
		p.add("kubernetes.backoff_limit", "must not be negative")
	}
	if k.TTLSecondsAfterFinished != nil && *k.TTLSecondsAfterFinished < 0 {
		p.add("kubernetes.ttl_seconds_after_finished", "must not be negative")
	}
	switch k.ImagePullPolicy {
	case "", "Always", "IfNotPresent", "Never":
	default:
		p.add("kubernetes.image_pull_policy", "%q is not Always, IfNotPresent or Never", k.ImagePullPolicy)
	}
	kf := &s.Kubeflow
	switch kf.Kind {
	case "", KindPyTorchJob, KindTFJob:
	default:
		p.add("kubeflow.kind", "%q is not PyTorchJob or TFJob", kf.Kind)
	}
	if kf.Workers < 0 {
		p.add("kubeflow.workers", "must not be negative")
	}
	if kf.PS < 0 {
		p.add("kubeflow.ps", "must not be negative")
	}
	if kf.PS > 0 && kf.Kind != KindTFJob {
		p.add("kubeflow.ps", "parameter servers are a TFJob setting")
	}
	switch kf.CleanPodPolicy {
	case "", "None", "Running", "All":
	default:
		p.add("kubeflow.clean_pod_policy", "%q is not None, Running or All", kf.CleanPodPolicy)
	}
}

func (r *Register) validate(p *problems) {
	switch {
	case r.Model == "":
		p.add("register.model", "is required")
	case len(r.Model) > 256 || !modelNameRe.MatchString(r.Model):
		p.add("register.model", "%q must be letters, digits, '_', '.' and '-'", r.Model)
	}
	if r.ServingEndpoint != "" {
		ep, err := expandEndpoint(r.ServingEndpoint, "m", "1", "job", 0)
		if err != nil {
			p.add("register.serving_endpoint", "%v", err)
		} else if u, err := url.Parse(ep); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.add("register.serving_endpoint", "%q is not an http(s) URL", r.ServingEndpoint)
		}
	}
	for _, k := range sortedKeys(r.Tags) {
		if k == "" || len(k) > 250 {
			p.add("register.tags", "tag keys must have 1 to 250 characters")
		}
	}
	for i, a := range r.Aliases {
		if r.Model != "" && modelNameRe.MatchString(r.Model) {
			if err := registry.ValidateRef(r.Model + "@" + a); err != nil {
				p.add(fmt.Sprintf("register.aliases[%d]", i), "%q is not a valid alias", a)
			}
		}
	}
}

// expandEndpoint replaces the placeholders of a serving endpoint template.
func expandEndpoint(tmpl, model, version, job string, trial int) (string, error) {
	var bad string
	out := placeholder.ReplaceAllStringFunc(tmpl, func(ph string) string {
		switch ph {
		case "{model}":
			return url.PathEscape(model)
		case "{version}":
			return version
		case "{job}":
			return job
		case "{trial}":
			return strconv.Itoa(trial)
		}
		if bad == "" {
			bad = ph
		}
		return ph
	})
	if bad != "" {
		return "", fmt.Errorf("unknown placeholder %s (use {model}, {version}, {job} or {trial})", bad)
	}
	return out, nil
}

// hyperparameterEnv returns the LARIAT_HP_<NAME> variables of params, failing on
// names that are invalid or map to the same variable.
func hyperparameterEnv(params map[string]Hyperparameter) ([][2]string, error) {
	out := make([][2]string, 0, len(params))
	seen := make(map[string]string, len(params))
	for _, k := range sortedKeys(params) {
		if !paramNameRe.MatchString(k) {
			return nil, fmt.Errorf("%q is not a valid name (letters, digits, '_', '.', '-')", k)
		}
		env := "LARIAT_HP_" + envSuffix(k)
		if other, ok := seen[env]; ok {
			return nil, fmt.Errorf("%q and %q both map to %s", other, k, env)
		}
		seen[env] = k
		out = append(out, [2]string{env, params[k].Text()})
	}
	return out, nil
}

// envSuffix upper-cases name and replaces every byte outside [A-Z0-9_] by '_'.
func envSuffix(name string) string {
	b := []byte(strings.ToUpper(name))
	for i, c := range b {
		if (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '_' {
			b[i] = '_'
		}
	}
	return string(b)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Environment variables a job receives.
const (
	EnvJobID           = "LARIAT_JOB_ID"
	EnvJobName         = "LARIAT_JOB_NAME"
	EnvTrial           = "LARIAT_TRIAL"
	EnvHyperparameters = "LARIAT_HYPERPARAMETERS"
	EnvFeatureViews    = "LARIAT_FEATURE_VIEWS"
	EnvFeatures        = "LARIAT_FEATURES"
	EnvLabels          = "LARIAT_LABELS"
	EnvDataset         = "LARIAT_DATASET"
	EnvViewsFile       = "LARIAT_VIEWS_FILE"
	EnvOnlineStore     = "LARIAT_ONLINE_STORE"
	EnvArtifactDir     = "LARIAT_ARTIFACT_DIR"
	EnvMetricsFile     = "LARIAT_METRICS_FILE"
)

// JobEnv returns the LARIAT_* variables of job j, sorted by name: its id, name and
// trial, the hyperparameters (as LARIAT_HP_<NAME> and as a JSON object in
// LARIAT_HYPERPARAMETERS), the inputs and the resolved outputs. Empty values are
// left out.
func JobEnv(j *Job) [][2]string {
	s := &j.Spec
	var env [][2]string
	add := func(k, v string) {
		if v != "" {
			env = append(env, [2]string{k, v})
		}
	}
	add(EnvJobID, j.ID)
	add(EnvJobName, s.Name)
	if j.Study != "" {
		add(EnvTrial, strconv.Itoa(j.Trial))
	}
	hp, _ := hyperparameterEnv(s.Hyperparameters)
	env = append(env, hp...)
	if len(s.Hyperparameters) > 0 {
		b, _ := json.Marshal(s.Hyperparameters)
		add(EnvHyperparameters, string(b))
	}
	add(EnvFeatureViews, strings.Join(s.Inputs.FeatureViews, ","))
	add(EnvFeatures, strings.Join(s.Inputs.Features, ","))
	add(EnvLabels, s.Inputs.Labels)
	add(EnvDataset, s.Inputs.Dataset)
	add(EnvViewsFile, s.Inputs.ViewsFile)
	add(EnvOnlineStore, s.Inputs.OnlineStore)
	add(EnvArtifactDir, j.Outputs.ArtifactDir)
	add(EnvMetricsFile, j.Outputs.MetricsFile)
	sort.Slice(env, func(a, b int) bool { return env[a][0] < env[b][0] })
	return env
}

// expandVars replaces $(NAME) by lookup(NAME) when it is defined and $$ by $, as
// Kubernetes expands command, args and env values. Undefined references stay as
// written.
func expandVars(s string, lookup func(string) (string, bool)) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '$' || i+1 >= len(s) {
			b.WriteByte(c)
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
			continue
		case '(':
			if end := strings.IndexByte(s[i+2:], ')'); end >= 0 {
				name := s[i+2 : i+2+end]
				if v, ok := lookup(name); ok {
					b.WriteString(v)
				} else {
					b.WriteString(s[i : i+2+end+1])
				}
				i += 2 + end
				continue
			}
		}
		b.WriteByte(c)
	}
	return b.String()
}

// resolveOutputPath expands the job variables in an output path.
func resolveOutputPath(p string, j *Job) string {
	return expandVars(p, func(name string) (string, bool) {
		switch name {
		case EnvJobID:
			return j.ID, true
		case EnvJobName:
			return j.Spec.Name, true
		case EnvTrial:
			return strconv.Itoa(j.Trial), true
		}
		return "", false
	})
}
