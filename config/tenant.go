package config

import (
	"crypto/sha256"
	"encoding/hex"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/lariat-gw/lariat/internal/yamlstrict"
)

// TenantFile is the file that makes a folder of route files a tenant's:
// routes/<tenant>/tenant.yaml next to the tenant's route files.
const TenantFile = "tenant.yaml"

// Tenant is a tenant.yaml: what the routes of one team's folder may do
// and how their callers are admitted. Every route of the folder must live
// under Endpoints and call only Upstreams and FeatureViews; Auth applies
// to each route that has no auth block of its own; Quotas bound the
// requests of all the tenant's routes together.
type Tenant struct {
	// APIVersion is the version of the tenant file format; only v1.
	APIVersion String `yaml:"apiVersion"`
	// Description is free text for people.
	Description string `yaml:"description"`
	// Endpoints are where the tenant's routes live: path prefixes
	// ("/team-a/"), or a host followed by a path prefix
	// ("team-a.example.com/"), whose routes then answer only requests for
	// that host. A route whose endpoint is under none is rejected.
	Endpoints []String `yaml:"endpoints"`
	// Auth is how callers of the tenant's routes authenticate, unless a
	// route has an auth block of its own.
	Auth *TenantAuth `yaml:"auth"`
	// Quotas bound the tenant's requests: rate and requests in flight, for
	// the whole tenant and per API key.
	Quotas *Quotas `yaml:"quotas"`
	// Upstreams are the hosts the tenant's routes may call: "host",
	// "host:port" or "*.domain" (any host under domain). Leaving it out
	// allows none.
	Upstreams []String `yaml:"upstreams"`
	// FeatureViews are the feature views the tenant's routes may read.
	FeatureViews []String `yaml:"feature_views"`
	// AdminTokens are the tenant's admin tokens, hashed as sha256:<64 hex
	// digits>: they read the tenant's routes, stats and errors on the
	// admin listener and reload its folder, and nothing else.
	AdminTokens []String `yaml:"admin_tokens"`

	// Name is the tenant's name: its folder's name.
	Name string `yaml:"-"`
	// File is the path of the tenant file; Hash identifies its content.
	File string `yaml:"-"`
	Hash string `yaml:"-"`
	// Pos is the position of the file's top-level mapping.
	Pos Pos `yaml:"-"`

	endpoints []tenantEndpoint
}

// TenantAuth says how callers of a tenant's routes authenticate: with one
// of its API keys (X-API-Key or Authorization: Bearer) or a JWT.
type TenantAuth struct {
	// APIKeys are the tenant's API keys, each with a name (for metrics and
	// per-key quotas) and its hash.
	APIKeys []APIKey `yaml:"api_keys"`
	// JWT verifies bearer tokens.
	JWT *TenantJWT `yaml:"jwt"`
}

// APIKey is one API key of a tenant.
type APIKey struct {
	// Name identifies the key in metrics and 429 answers.
	Name String `yaml:"name"`
	// Hash is the key's SHA-256, as sha256:<64 hex digits>
	// (printf %s KEY | sha256sum).
	Hash String `yaml:"hash"`
	// Quota replaces quotas.per_key for this key.
	Quota *Quota `yaml:"quota"`
}

// TenantJWT verifies JSON Web Tokens: HS256 with a secret from the
// environment, RS256 with a PEM public key, or RS256 with the keys of a
// JWKS URL. Tokens must carry exp.
type TenantJWT struct {
	JWTAuth `yaml:",inline"`
	// JWKSURL is the URL of a JSON Web Key Set holding the RS256 keys,
	// read when the tenant loads.
	JWKSURL String `yaml:"jwks_url"`
	// RequiredClaims maps claim names to the value each token must carry
	// (a string claim equal to it, or a list of strings holding it).
	RequiredClaims map[string]String `yaml:"required_claims"`
}

// Quotas bound a tenant's requests. The inline quota is the tenant's as a
// whole; PerKey is each API key's.
type Quotas struct {
	Quota `yaml:",inline"`
	// PerKey is the quota of each API key (a key's own quota replaces it).
	PerKey *Quota `yaml:"per_key"`
	// Scope is where the rate is counted: replica (the default; each
	// gateway replica admits the rate on its own, so write the global rate
	// divided by the replicas) or global (counted in Redis across
	// replicas; needs lariat serve --quota-redis).
	Scope String `yaml:"scope"`
}

// Quota is a rate with a burst and a bound on requests in flight. Zero
// values mean no limit.
type Quota struct {
	// RequestsPerSecond is the sustained rate admitted.
	RequestsPerSecond float64 `yaml:"requests_per_second"`
	// Burst is how many requests may come at once above the rate (the
	// bucket size); the rate rounded up when left out.
	Burst int `yaml:"burst"`
	// InFlight bounds the requests being served at once.
	InFlight int `yaml:"in_flight"`
}

// BurstOrDefault returns the burst, defaulted from the rate.
func (q Quota) BurstOrDefault() int {
	if q.Burst > 0 {
		return q.Burst
	}
	return max(1, int(math.Ceil(q.RequestsPerSecond)))
}

// Quota scopes.
const (
	ScopeReplica = "replica"
	ScopeGlobal  = "global"
)

type tenantEndpoint struct {
	host, prefix string
}

var (
	upstreamRe = regexp.MustCompile(`^(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:[0-9]{1,5})?$`)
	hostRe     = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$`)
)

// ParseTenant decodes and checks the tenant file named file of tenant
// name. Problems are returned as Errors with file:line:col positions.
func ParseTenant(file, name string, data []byte) (*Tenant, error) {
	root, err := yamlstrict.Parse(file, data, "a tenant file (endpoints, auth, quotas, upstreams, feature_views)")
	if err != nil {
		return nil, err
	}
	t := &Tenant{Name: name, File: file, Pos: PosOf(file, root)}
	sum := sha256.Sum256(data)
	t.Hash = hex.EncodeToString(sum[:6])
	var errs Errors
	if !nameRe.MatchString(name) {
		errs = append(errs, Errorf(t.Pos, "tenant folder name %q: use letters, digits, '_', '-' and '.'", name))
	}
	errs.Add(t.Pos, Decode(file, root, t))
	if len(errs) == 0 {
		t.check(&errs)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return t, nil
}

// LoadTenant reads and parses the tenant file of the tenant folder dir.
func LoadTenant(dir string) (*Tenant, error) {
	file := filepath.Join(dir, TenantFile)
	data, err := readFile(file)
	if err != nil {
		return nil, Errors{Errorf(Pos{File: file}, "%v", err)}
	}
	return ParseTenant(file, filepath.Base(dir), data)
}

func (t *Tenant) check(errs *Errors) {
	if v := t.APIVersion; v.Value != "" && v.Value != "v1" {
		*errs = append(*errs, Errorf(v.Pos, "unsupported apiVersion %q (supported: v1)", v.Value))
	}
	if len(t.Endpoints) == 0 {
		*errs = append(*errs, Errorf(t.Pos, "missing required key \"endpoints\": the path prefixes the tenant's routes live under"))
	}
	for _, e := range t.Endpoints {
		host, prefix := "", e.Value
		if !strings.HasPrefix(prefix, "/") {
			var ok bool
			host, prefix, ok = strings.Cut(prefix, "/")
			prefix = "/" + prefix
			if !ok || !hostRe.MatchString(host) {
				*errs = append(*errs, Errorf(e.Pos, "endpoints: %q must be a path prefix (/team-a/) or a host and a path prefix (team-a.example.com/)", e.Value))
				continue
			}
		}
		if u, err := url.Parse(prefix); err != nil || u.Path != prefix || strings.ContainsAny(prefix, " ?#") || strings.HasPrefix(prefix, "/-/") {
			*errs = append(*errs, Errorf(e.Pos, "endpoints: %q is not a clean path prefix", e.Value))
			continue
		}
		t.endpoints = append(t.endpoints, tenantEndpoint{host: host, prefix: prefix})
	}
	if a := t.Auth; a != nil {
		if len(a.APIKeys) == 0 && a.JWT == nil {
			*errs = append(*errs, Errorf(t.Pos, "auth: give api_keys, jwt or both"))
		}
		names := map[string]bool{}
		for _, k := range a.APIKeys {
			switch {
			case k.Name.Value == "":
				*errs = append(*errs, Errorf(k.Hash.Pos, "auth.api_keys: every key needs a name"))
			case !nameRe.MatchString(k.Name.Value):
				*errs = append(*errs, Errorf(k.Name.Pos, "auth.api_keys: invalid key name %q: use letters, digits, '_', '-' and '.'", k.Name.Value))
			case names[k.Name.Value]:
				*errs = append(*errs, Errorf(k.Name.Pos, "auth.api_keys: duplicate key name %q", k.Name.Value))
			}
			names[k.Name.Value] = true
			if !apiKeyRe.MatchString(k.Hash.Value) {
				*errs = append(*errs, Errorf(k.Hash.Pos, "auth.api_keys: key %q: hash %q is not sha256:<64 hex digits> (printf %%s KEY | sha256sum)", k.Name.Value, k.Hash.Value))
			}
			if k.Quota != nil {
				checkQuota(*k.Quota, k.Name.Pos, "auth.api_keys."+k.Name.Value+".quota", errs)
			}
		}
		if j := a.JWT; j != nil {
			n := 0
			for _, s := range []String{j.HS256SecretEnv, j.RS256PublicKeyFile, j.JWKSURL} {
				if s.Value != "" {
					n++
				}
			}
			if n != 1 {
				*errs = append(*errs, Errorf(t.Pos, "auth.jwt: give exactly one of hs256_secret_env, rs256_public_key_file and jwks_url"))
			}
			if u := j.JWKSURL; u.Value != "" {
				if pu, err := url.Parse(u.Value); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
					*errs = append(*errs, Errorf(u.Pos, "auth.jwt.jwks_url: %q is not an http(s) URL", u.Value))
				}
			}
		}
	}
	if q := t.Quotas; q != nil {
		checkQuota(q.Quota, t.Pos, "quotas", errs)
		if q.PerKey != nil {
			checkQuota(*q.PerKey, t.Pos, "quotas.per_key", errs)
		}
		switch q.Scope.Value {
		case "":
			q.Scope.Value = ScopeReplica
		case ScopeReplica, ScopeGlobal:
		default:
			*errs = append(*errs, Errorf(q.Scope.Pos, "quotas.scope must be replica or global, got %q", q.Scope.Value))
		}
		if q.Scope.Value == ScopeGlobal && q.RequestsPerSecond == 0 && (q.PerKey == nil || q.PerKey.RequestsPerSecond == 0) {
			*errs = append(*errs, Errorf(q.Scope.Pos, "quotas.scope global needs a requests_per_second to count"))
		}
	}
	for _, u := range t.Upstreams {
		if !upstreamRe.MatchString(strings.ToLower(u.Value)) {
			*errs = append(*errs, Errorf(u.Pos, "upstreams: %q must be a host, host:port or *.domain", u.Value))
		}
	}
	for _, v := range t.FeatureViews {
		if v.Value == "" || strings.ContainsAny(v.Value, ": \t") {
			*errs = append(*errs, Errorf(v.Pos, "feature_views: %q is not a feature view name", v.Value))
		}
	}
	for _, tok := range t.AdminTokens {
		if !apiKeyRe.MatchString(tok.Value) {
			*errs = append(*errs, Errorf(tok.Pos, "admin_tokens: %q is not a hashed token; write sha256:<64 hex digits> (printf %%s TOKEN | sha256sum)", tok.Value))
		}
	}
}

func checkQuota(q Quota, pos Pos, what string, errs *Errors) {
	if q.RequestsPerSecond < 0 || q.Burst < 0 || q.InFlight < 0 {
		*errs = append(*errs, Errorf(pos, "%s: requests_per_second, burst and in_flight must not be negative", what))
	}
	if q.Burst > 0 && q.RequestsPerSecond == 0 {
		*errs = append(*errs, Errorf(pos, "%s: burst needs requests_per_second", what))
	}
}

// EndpointHosts reports whether endpoint lies under one of the tenant's
// endpoints, and the hosts the route then answers for (nil: any host).
func (t *Tenant) EndpointHosts(endpoint string) (hosts []string, ok bool) {
	anyHost := false
	for _, e := range t.endpoints {
		if !underPrefix(endpoint, e.prefix) {
			continue
		}
		ok = true
		if e.host == "" {
			anyHost = true
		} else if !contains(hosts, e.host) {
			hosts = append(hosts, e.host)
		}
	}
	if anyHost {
		hosts = nil
	}
	return hosts, ok
}

// underPrefix reports whether path is prefix or below it, segment-wise:
// "/a" covers "/a" and "/a/x" but not "/ab".
func underPrefix(path, prefix string) bool {
	if prefix == "/" || path == prefix {
		return true
	}
	if strings.HasSuffix(prefix, "/") {
		return strings.HasPrefix(path, prefix)
	}
	return strings.HasPrefix(path, prefix+"/")
}

// EndpointList returns the tenant's endpoints as written, for messages.
func (t *Tenant) EndpointList() string {
	out := make([]string, len(t.Endpoints))
	for i, e := range t.Endpoints {
		out[i] = e.Value
	}
	return strings.Join(out, ", ")
}

// AllowsUpstream reports whether the tenant may call host (a URL's host,
// with or without port). A nil tenant allows every host.
func (t *Tenant) AllowsUpstream(host string) bool {
	if t == nil {
		return true
	}
	host = strings.ToLower(host)
	name, port := host, ""
	if h, p, err := net.SplitHostPort(host); err == nil {
		name, port = h, p
	}
	for _, u := range t.Upstreams {
		pat := strings.ToLower(u.Value)
		pname, pport := pat, ""
		if i := strings.LastIndexByte(pat, ':'); i >= 0 {
			pname, pport = pat[:i], pat[i+1:]
		}
		if pport != "" && pport != port {
			continue
		}
		if d, ok := strings.CutPrefix(pname, "*."); ok {
			if strings.HasSuffix(name, "."+d) {
				return true
			}
			continue
		}
		if pname == name {
			return true
		}
	}
	return false
}

// UpstreamList returns the allowed upstreams as written, for messages.
func (t *Tenant) UpstreamList() string { return listOrNone(t.Upstreams) }

// listOrNone joins the values of l with commas, or says "none".
func listOrNone(l []String) string {
	if len(l) == 0 {
		return "none"
	}
	out := make([]string, len(l))
	for i, v := range l {
		out[i] = v.Value
	}
	return strings.Join(out, ", ")
}

// AllowsFeatureView reports whether the tenant may read view. A nil
// tenant allows every view.
func (t *Tenant) AllowsFeatureView(view string) bool {
	if t == nil {
		return true
	}
	for _, v := range t.FeatureViews {
		if v.Value == view {
			return true
		}
	}
	return false
}

// FeatureViewList returns the allowed views as written, for messages.
func (t *Tenant) FeatureViewList() string { return listOrNone(t.FeatureViews) }

// TenantDir is one tenant folder of a routes folder.
type TenantDir struct {
	// Name is the folder's name, the tenant's name.
	Name string
	// Dir is the folder; Files its route files (tenant.yaml left out).
	Dir   string
	Files []string
}

// Layout is what a routes folder holds: route files served without a
// tenant (Files), and tenant folders, each a sub-folder with a
// tenant.yaml and its own route files. Sub-folders without a tenant.yaml
// are not read. A folder that has a tenant.yaml itself is one tenant.
type Layout struct {
	Files   []string
	Tenants []TenantDir
}

// IsTenantDir reports whether dir holds a tenant file.
func IsTenantDir(dir string) bool {
	st, err := os.Stat(filepath.Join(dir, TenantFile))
	return err == nil && !st.IsDir()
}

// ReadLayout lists the route files and tenant folders of dir.
func ReadLayout(dir string) (Layout, error) {
	var l Layout
	if IsTenantDir(dir) {
		files, err := RouteFiles(dir)
		if err != nil {
			return l, err
		}
		l.Tenants = []TenantDir{{Name: filepath.Base(filepath.Clean(dir)), Dir: dir, Files: files}}
		return l, nil
	}
	files, err := RouteFiles(dir)
	if err != nil {
		return l, err
	}
	l.Files = files
	entries, err := os.ReadDir(dir)
	if err != nil {
		return l, err
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		sub := filepath.Join(dir, name)
		// Follow links: a Kubernetes projected volume links each folder
		// into its ..data folder.
		if st, err := os.Stat(sub); err != nil || !st.IsDir() || !IsTenantDir(sub) {
			continue
		}
		tf, err := RouteFiles(sub)
		if err != nil {
			return l, err
		}
		l.Tenants = append(l.Tenants, TenantDir{Name: name, Dir: sub, Files: tf})
	}
	sort.Slice(l.Tenants, func(i, j int) bool { return l.Tenants[i].Name < l.Tenants[j].Name })
	return l, nil
}

// TenantLabel is the metric label pair of tenant name, with a trailing
// comma, or "" for routes without a tenant.
func TenantLabel(name string) string {
	if name == "" {
		return ""
	}
	return "tenant=" + strconv.Quote(name) + ","
}
