package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const goodTenant = `apiVersion: v1
endpoints: [/team-a/, a.example.com/v2/a]
auth:
  api_keys:
    - name: web
      hash: sha256:2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b
      quota: {requests_per_second: 5, in_flight: 2}
  jwt:
    hs256_secret_env: TEAM_A_SECRET
    issuer: https://issuer.example
    required_claims: {scope: predict}
quotas:
  requests_per_second: 100
  burst: 20
  in_flight: 50
  per_key: {requests_per_second: 10}
upstreams: [rank.models, "fraud.models:8080", "*.team-a.svc"]
feature_views: [driver_stats]
admin_tokens: [sha256:2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b]
`

func TestParseTenant(t *testing.T) {
	tn, err := ParseTenant("a/tenant.yaml", "a", []byte(goodTenant))
	if err != nil {
		t.Fatal(err)
	}
	if tn.Quotas.Scope.Value != ScopeReplica || tn.Quotas.BurstOrDefault() != 20 || tn.Quotas.PerKey.BurstOrDefault() != 10 {
		t.Fatalf("quotas %+v", tn.Quotas)
	}
	ep := func(path string, wantOK bool, wantHosts ...string) {
		t.Helper()
		hosts, ok := tn.EndpointHosts(path)
		if ok != wantOK || strings.Join(hosts, ",") != strings.Join(wantHosts, ",") {
			t.Fatalf("EndpointHosts(%q) = %v, %v; want %v, %v", path, hosts, ok, wantHosts, wantOK)
		}
	}
	ep("/team-a/x", true)
	ep("/team-a", false)
	ep("/team-b/x", false)
	ep("/v2/a", true, "a.example.com")
	ep("/v2/a/b", true, "a.example.com")
	ep("/v2/ab", false)
	up := func(host string, want bool) {
		t.Helper()
		if got := tn.AllowsUpstream(host); got != want {
			t.Fatalf("AllowsUpstream(%q) = %v", host, got)
		}
	}
	up("rank.models", true)
	up("RANK.models:9000", true)
	up("fraud.models:8080", true)
	up("fraud.models:8081", false)
	up("fraud.models", false)
	up("x.team-a.svc:80", true)
	up("team-a.svc", false)
	up("evil.models", false)
	if !tn.AllowsFeatureView("driver_stats") || tn.AllowsFeatureView("other") {
		t.Fatal("feature views")
	}
	var none *Tenant
	if !none.AllowsUpstream("x") || !none.AllowsFeatureView("x") {
		t.Fatal("nil tenant must allow everything")
	}
}

func TestParseTenantErrors(t *testing.T) {
	f := func(src, want string) {
		t.Helper()
		_, err := ParseTenant("t/tenant.yaml", "t", []byte(src))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("error %v; want %q", err, want)
		}
	}
	f("endpoints: [/a/]\nupstream: [x]\n", `t/tenant.yaml:2:1: unknown key "upstream" (did you mean "upstreams"?)`)
	f("upstreams: [x]\n", `t/tenant.yaml:1:1: missing required key "endpoints"`)
	f("endpoints: [/a/]\nupstreams: [\"http://x/\"]\n", `t/tenant.yaml:2:13: upstreams: "http://x/" must be a host`)
	f("endpoints: [a b]\n", `t/tenant.yaml:1:13: endpoints: "a b" must be a path prefix`)
	f("endpoints: [/a/]\nauth:\n  api_keys:\n    - {name: k, hash: secret}\n", `t/tenant.yaml:4:23: auth.api_keys: key "k": hash "secret" is not sha256`)
	f("endpoints: [/a/]\nquotas: {scope: galactic}\n", `t/tenant.yaml:2:17: quotas.scope must be replica or global`)
	f("endpoints: [/a/]\nquotas: {requests_per_second: -1}\n", `quotas: requests_per_second, burst and in_flight must not be negative`)
	f("endpoints: [/a/]\nauth:\n  jwt: {issuer: x}\n", `auth.jwt: give exactly one of hs256_secret_env, rs256_public_key_file and jwks_url`)
	f("endpoints: [/a/]\nadmin_tokens: [tok]\n", `t/tenant.yaml:2:16: admin_tokens: "tok" is not a hashed token`)
	f("endpoints: [/a/\n", `t/tenant.yaml:1:1: invalid YAML`)
}

func TestReadLayout(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("top.yaml", "x")
	write("b/tenant.yaml", "endpoints: [/b/]")
	write("b/r.yaml", "x")
	write("a/tenant.yaml", "endpoints: [/a/]")
	write("a/r1.yaml", "x")
	write("a/r2.yml", "x")
	write("plain/r.yaml", "x")
	l, err := ReadLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Files) != 1 || filepath.Base(l.Files[0]) != "top.yaml" {
		t.Fatalf("files %v", l.Files)
	}
	if len(l.Tenants) != 2 || l.Tenants[0].Name != "a" || len(l.Tenants[0].Files) != 2 || l.Tenants[1].Name != "b" || len(l.Tenants[1].Files) != 1 {
		t.Fatalf("tenants %+v", l.Tenants)
	}
	// A tenant folder on its own is one tenant.
	l, err = ReadLayout(filepath.Join(dir, "a"))
	if err != nil || len(l.Files) != 0 || len(l.Tenants) != 1 || l.Tenants[0].Name != "a" {
		t.Fatalf("layout %+v, %v", l, err)
	}
}
