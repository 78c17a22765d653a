package server_test

import (
	"context"
	"fmt"
	"net/url"
	"reflect"
	"sort"
	"strconv"
	"sync"
	"testing"

	"github.com/lariat-gw/lariat/internal/pgtest"
	"github.com/lariat-gw/lariat/internal/registrytest"
	"github.com/lariat-gw/lariat/registry"
	"github.com/lariat-gw/lariat/registry/server"
)

// TestStores runs the same suite against every Store implementation.
func TestStores(t *testing.T) {
	t.Run("bolt", func(t *testing.T) {
		runStoreSuite(t, boltFactory)
	})
	t.Run("postgres", func(t *testing.T) {
		if testing.Short() {
			t.Skip("starts a PostgreSQL server")
		}
		pg := pgtest.Start(t)
		runStoreSuite(t, func(t *testing.T) func() server.Store {
			dsn := pg.NewDatabase(t)
			return func() server.Store {
				s, err := server.OpenPostgresStore(context.Background(), dsn)
				if err != nil {
					t.Fatalf("open postgres store: %v", err)
				}
				return s
			}
		})
	})
}

func runStoreSuite(t *testing.T, factory storeFactory) {
	tests := []struct {
		name string
		fn   func(t *testing.T, open func() server.Store)
	}{
		{"ErrorResponses", testErrorResponses},
		{"ModelLifecycle", testModelLifecycle},
		{"VersionsAndExtensionFields", testVersions},
		{"Aliases", testAliases},
		{"Tags", testTags},
		{"Stages", testStages},
		{"SearchModels", testSearchModels},
		{"SearchVersions", testSearchVersions},
		{"Runs", testRuns},
		{"RenameAndDelete", testRenameAndDelete},
		{"Reopen", testReopen},
		{"ConcurrentWriters", testConcurrentWriters},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			open := factory(t)
			tc.fn(t, open)
		})
	}
}

func openServer(t *testing.T, open func() server.Store) *testServer {
	s := open()
	t.Cleanup(func() { _ = s.Close() })
	return startServer(t, s)
}

func testErrorResponses(t *testing.T, open func() server.Store) {
	ts := openServer(t, open)
	expectOK(t, ts.call(t, "POST", "registered-models/create", `{"name":"eta"}`))
	expectOK(t, ts.call(t, "POST", "model-versions/create", `{"name":"eta","source":"s3://m/eta/1"}`))

	f := func(method, path, body string, status int, code string) {
		t.Helper()
		expectError(t, ts.call(t, method, path, body), status, code)
	}
	const (
		notFound = registry.CodeResourceDoesNotExist
		exists   = registry.CodeResourceAlreadyExists
		invalid  = registry.CodeInvalidParameterValue
	)
	// Unknown resources.
	f("GET", "registered-models/get?name=nope", "", 404, notFound)
	f("GET", "model-versions/get?name=nope&version=1", "", 404, notFound)
	f("GET", "model-versions/get?name=eta&version=99", "", 404, notFound)
	f("POST", "model-versions/create", `{"name":"nope","source":"s3://x"}`, 404, notFound)
	f("PATCH", "registered-models/update", `{"name":"nope","description":"d"}`, 404, notFound)
	f("DELETE", "registered-models/delete", `{"name":"nope"}`, 404, notFound)
	f("DELETE", "model-versions/delete", `{"name":"eta","version":"42"}`, 404, notFound)
	f("POST", "registered-models/rename", `{"name":"nope","new_name":"x"}`, 404, notFound)
	f("POST", "registered-models/alias", `{"name":"eta","alias":"champion","version":"7"}`, 404, notFound)
	f("GET", "registered-models/alias?name=nope&alias=champion", "", 404, notFound)
	f("POST", "registered-models/set-tag", `{"name":"nope","key":"k","value":"v"}`, 404, notFound)
	f("POST", "model-versions/set-tag", `{"name":"eta","version":"5","key":"k","value":"v"}`, 404, notFound)
	f("GET", "registered-models/get-latest-versions?name=nope", "", 404, notFound)
	f("GET", "model-versions/get-download-uri?name=eta&version=3", "", 404, notFound)
	f("POST", "model-versions/transition-stage", `{"name":"eta","version":"2","stage":"Production","archive_existing_versions":false}`, 404, notFound)
	// MLflow answers an unknown alias of an existing model with INVALID_PARAMETER_VALUE.
	f("GET", "registered-models/alias?name=eta&alias=champion", "", 400, invalid)

	// Duplicates.
	f("POST", "registered-models/create", `{"name":"eta"}`, 400, exists)
	expectOK(t, ts.call(t, "POST", "registered-models/create", `{"name":"other"}`))
	f("POST", "registered-models/rename", `{"name":"other","new_name":"eta"}`, 400, exists)

	// Missing and invalid parameters.
	f("POST", "registered-models/create", `{}`, 400, invalid)
	f("POST", "registered-models/create", ``, 400, invalid)
	f("POST", "registered-models/create", `{"name":"a/b"}`, 400, invalid)
	f("POST", "registered-models/create", `{"name":"a@b"}`, 400, invalid)
	f("POST", "registered-models/create", `{"name":"x","tags":[{"key":"","value":"v"}]}`, 400, invalid)
	f("GET", "registered-models/get", "", 400, invalid)
	f("POST", "model-versions/create", `{"name":"eta"}`, 400, invalid)
	f("POST", "model-versions/create", `{"source":"s3://x"}`, 400, invalid)
	f("GET", "model-versions/get?name=eta", "", 400, invalid)
	f("GET", "model-versions/get?name=eta&version=abc", "", 400, invalid)
	f("GET", "model-versions/get?name=eta&version=-1", "", 400, invalid)
	f("POST", "registered-models/rename", `{"name":"eta"}`, 400, invalid)
	f("POST", "registered-models/alias", `{"name":"eta","alias":"latest","version":"1"}`, 400, invalid)
	f("POST", "registered-models/alias", `{"name":"eta","alias":"v1","version":"1"}`, 400, invalid)
	f("POST", "registered-models/alias", `{"name":"eta","alias":"a b","version":"1"}`, 400, invalid)
	f("POST", "registered-models/alias", `{"name":"eta","version":"1"}`, 400, invalid)
	f("POST", "registered-models/set-tag", `{"name":"eta","value":"v"}`, 400, invalid)
	f("POST", "model-versions/transition-stage", `{"name":"eta","version":"1","stage":"Bogus"}`, 400, invalid)
	f("POST", "model-versions/transition-stage", `{"name":"eta","version":"1","stage":"None","archive_existing_versions":true}`, 400, invalid)
	f("GET", "registered-models/get-latest-versions?name=eta&stages=Bogus", "", 400, invalid)
	f("GET", "registered-models/search?filter="+url.QueryEscape("name === 'x'"), "", 400, invalid)
	f("GET", "registered-models/search?filter="+url.QueryEscape("owner = 'x'"), "", 400, invalid)
	f("GET", "registered-models/search?filter="+url.QueryEscape("name = 'x"), "", 400, invalid)
	f("GET", "registered-models/search?order_by=color", "", 400, invalid)
	f("GET", "registered-models/search?max_results=5000", "", 400, invalid)
	f("GET", "registered-models/search?max_results=ten", "", 400, invalid)
	f("GET", "registered-models/search?page_token=%21%21", "", 400, invalid)
	f("GET", "model-versions/search?filter="+url.QueryEscape("version > 'abc'"), "", 400, invalid)

	// Malformed bodies.
	f("POST", "registered-models/create", `{"name":`, 400, invalid)
	f("POST", "registered-models/create", `["eta"]`, 400, invalid)
	f("POST", "registered-models/create", `{"name":42}`, 400, invalid)
	f("POST", "model-versions/create", `{"name":"eta","source":"x","metrics":{"auc":"high"}}`, 400, invalid)

	// Routing.
	f("GET", "no-such-thing", "", 404, registry.CodeEndpointNotFound)
	f("GET", "/api/2.0/other/registered-models/get?name=eta", "", 404, registry.CodeEndpointNotFound)
	f("GET", "registered-models/create", "", 405, registry.CodeBadRequest)
	f("POST", "registered-models/get", `{"name":"eta"}`, 405, registry.CodeBadRequest)

	// The client surfaces API errors as *Error.
	ctx := context.Background()
	_, err := ts.Client.GetModel(ctx, "nope")
	expectCode(t, err, registry.CodeResourceDoesNotExist)
	if !registry.IsNotFound(err) {
		t.Fatalf("IsNotFound(%v) = false", err)
	}
	_, err = ts.Client.CreateModel(ctx, registry.CreateModelRequest{Name: "eta"})
	expectCode(t, err, registry.CodeResourceAlreadyExists)
}

func testModelLifecycle(t *testing.T, open func() server.Store) {
	ts := openServer(t, open)
	m := expectOK(t, ts.call(t, "POST", "registered-models/create",
		`{"name":"eta","description":"arrival time","tags":[{"key":"team","value":"ml"},{"key":"a","value":"1"},{"key":"team","value":"ml-core"}]}`))
	rm := m["registered_model"].(map[string]any)
	if rm["name"] != "eta" || rm["description"] != "arrival time" {
		t.Fatalf("unexpected model %v", rm)
	}
	if _, ok := rm["creation_timestamp"].(float64); !ok {
		t.Fatalf("creation_timestamp is not a JSON number: %v", rm)
	}
	wantTags := []any{map[string]any{"key": "a", "value": "1"}, map[string]any{"key": "team", "value": "ml-core"}}
	if !reflect.DeepEqual(rm["tags"], wantTags) {
		t.Fatalf("tags = %v, want %v", rm["tags"], wantTags)
	}

	got := expectOK(t, ts.call(t, "GET", "registered-models/get?name=eta", ""))["registered_model"].(map[string]any)
	if !reflect.DeepEqual(got, rm) {
		t.Fatalf("get = %v, want %v", got, rm)
	}
	// The UI prefix serves the same API.
	expectOK(t, ts.call(t, "GET", "/ajax-api/2.0/mlflow/registered-models/get?name=eta", ""))

	upd := expectOK(t, ts.call(t, "PATCH", "registered-models/update", `{"name":"eta","description":"new"}`))["registered_model"].(map[string]any)
	if upd["description"] != "new" {
		t.Fatalf("update: %v", upd)
	}
	if upd["last_updated_timestamp"].(float64) < rm["last_updated_timestamp"].(float64) {
		t.Fatalf("last_updated_timestamp went back: %v -> %v", rm["last_updated_timestamp"], upd["last_updated_timestamp"])
	}

	ctx := context.Background()
	cm := registrytest.Must[*registry.RegisteredModel](t)(ts.Client.GetModel(ctx, "eta"))
	if cm.Description != "new" || len(cm.Tags) != 2 {
		t.Fatalf("client get: %+v", cm)
	}
	if m := expectOK(t, ts.call(t, "DELETE", "registered-models/delete", `{"name":"eta"}`)); len(m) != 0 {
		t.Fatalf("delete answered %v, want {}", m)
	}
	expectError(t, ts.call(t, "GET", "registered-models/get?name=eta", ""), 404, registry.CodeResourceDoesNotExist)
}

func testVersions(t *testing.T, open func() server.Store) {
	ts := openServer(t, open)
	ctx := context.Background()
	registrytest.Must[*registry.RegisteredModel](t)(ts.Client.CreateModel(ctx, registry.CreateModelRequest{Name: "eta"}))

	raw := expectOK(t, ts.call(t, "POST", "model-versions/create", `{"name":"eta","source":"s3://models/eta/1","run_id":"r1",
		"tags":[{"key":"framework","value":"xgboost"}],"description":"first",
		"serving_endpoint":"http://127.0.0.1:9001/v2/models/eta/infer","training_job":"job-1",
		"params":{"depth":"6"},"metrics":{"auc":0.91},"feature_views":["driver_stats","trip"]}`))
	mv := raw["model_version"].(map[string]any)
	for k, want := range map[string]any{
		"name": "eta", "version": "1", "current_stage": "None", "status": "READY", "source": "s3://models/eta/1",
		"run_id": "r1", "description": "first", "serving_endpoint": "http://127.0.0.1:9001/v2/models/eta/infer",
		"training_job": "job-1",
	} {
		if mv[k] != want {
			t.Fatalf("model_version[%q] = %#v, want %#v (%v)", k, mv[k], want, mv)
		}
	}
	if !reflect.DeepEqual(mv["params"], map[string]any{"depth": "6"}) || !reflect.DeepEqual(mv["metrics"], map[string]any{"auc": 0.91}) ||
		!reflect.DeepEqual(mv["feature_views"], []any{"driver_stats", "trip"}) {
		t.Fatalf("extension fields: %v", mv)
	}

	// Versions count up per model; a version sent as a JSON number is accepted.
	for i := 2; i <= 3; i++ {
		v := registrytest.Must[*registry.ModelVersion](t)(ts.Client.CreateVersion(ctx, registry.CreateVersionRequest{Name: "eta", Source: fmt.Sprintf("s3://models/eta/%d", i)}))
		if v.Version != strconv.Itoa(i) {
			t.Fatalf("version %d got number %q", i, v.Version)
		}
	}
	got := expectOK(t, ts.call(t, "GET", "model-versions/get?name=eta&version=1", ""))["model_version"].(map[string]any)
	if !reflect.DeepEqual(got, mv) {
		t.Fatalf("get = %v\nwant %v", got, mv)
	}
	v2 := registrytest.Must[*registry.ModelVersion](t)(ts.Client.GetVersion(ctx, "eta", "2"))
	if v2.Source != "s3://models/eta/2" || v2.Params != nil {
		t.Fatalf("version 2: %+v", v2)
	}

	desc, ep := "better", "http://127.0.0.1:9002/v2/models/eta/infer"
	upd := registrytest.Must[*registry.ModelVersion](t)(ts.Client.UpdateVersion(ctx, registry.UpdateVersionRequest{Name: "eta", Version: "2", Description: &desc, ServingEndpoint: &ep}))
	if upd.Description != desc || upd.ServingEndpoint != ep || upd.Source != "s3://models/eta/2" {
		t.Fatalf("update: %+v", upd)
	}
	upd = registrytest.Must[*registry.ModelVersion](t)(ts.Client.UpdateVersion(ctx, registry.UpdateVersionRequest{Name: "eta", Version: "2"}))
	if upd.Description != desc || upd.ServingEndpoint != ep {
		t.Fatalf("an empty update changed fields: %+v", upd)
	}
	expectOK(t, ts.call(t, "PATCH", "model-versions/update", `{"name":"eta","version":2,"description":"by number"}`))

	uri := expectOK(t, ts.call(t, "GET", "model-versions/get-download-uri?name=eta&version=3", ""))
	if uri["artifact_uri"] != "s3://models/eta/3" {
		t.Fatalf("download uri: %v", uri)
	}

	// Deleted numbers are never reused.
	expectOK(t, ts.call(t, "DELETE", "model-versions/delete", `{"name":"eta","version":"3"}`))
	expectError(t, ts.call(t, "GET", "model-versions/get?name=eta&version=3", ""), 404, registry.CodeResourceDoesNotExist)
	v4 := registrytest.Must[*registry.ModelVersion](t)(ts.Client.CreateVersion(ctx, registry.CreateVersionRequest{Name: "eta", Source: "s3://models/eta/4"}))
	if v4.Version != "4" {
		t.Fatalf("version after delete = %q, want 4", v4.Version)
	}

	// Model shows latest versions per stage.
	m := registrytest.Must[*registry.RegisteredModel](t)(ts.Client.GetModel(ctx, "eta"))
	if len(m.LatestVersions) != 1 || m.LatestVersions[0].Version != "4" {
		t.Fatalf("latest_versions = %+v", m.LatestVersions)
	}
}

func testAliases(t *testing.T, open func() server.Store) {
	ts := openServer(t, open)
	ctx := context.Background()
	registrytest.Must[*registry.RegisteredModel](t)(ts.Client.CreateModel(ctx, registry.CreateModelRequest{Name: "eta"}))
	for i := 1; i <= 3; i++ {
		registrytest.Must[*registry.ModelVersion](t)(ts.Client.CreateVersion(ctx, registry.CreateVersionRequest{Name: "eta", Source: "s3://x", ServingEndpoint: fmt.Sprintf("http://127.0.0.1:900%d", i)}))
	}
	if m := expectOK(t, ts.call(t, "POST", "registered-models/alias", `{"name":"eta","alias":"champion","version":"2"}`)); len(m) != 0 {
		t.Fatalf("set alias answered %v", m)
	}
	expectOK(t, ts.call(t, "POST", "registered-models/alias", `{"name":"eta","alias":"challenger","version":3}`))
	mv := expectOK(t, ts.call(t, "GET", "registered-models/alias?name=eta&alias=champion", ""))["model_version"].(map[string]any)
	if mv["version"] != "2" || !reflect.DeepEqual(mv["aliases"], []any{"champion"}) || mv["serving_endpoint"] != "http://127.0.0.1:9002" {
		t.Fatalf("by alias: %v", mv)
	}
	rm := registrytest.Must[*registry.RegisteredModel](t)(ts.Client.GetModel(ctx, "eta"))
	want := []registry.Alias{{Alias: "challenger", Version: "3"}, {Alias: "champion", Version: "2"}}
	if !reflect.DeepEqual(rm.Aliases, want) {
		t.Fatalf("model aliases = %v, want %v", rm.Aliases, want)
	}

	// Move the alias.
	if err := ts.Client.SetAlias(ctx, "eta", "champion", "3"); err != nil {
		t.Fatal(err)
	}
	v := registrytest.Must[*registry.ModelVersion](t)(ts.Client.VersionByAlias(ctx, "eta", "champion"))
	if v.Version != "3" || !reflect.DeepEqual(v.Aliases, []string{"challenger", "champion"}) {
		t.Fatalf("after move: %+v", v)
	}
	if v2 := registrytest.Must[*registry.ModelVersion](t)(ts.Client.GetVersion(ctx, "eta", "2")); v2.Aliases != nil {
		t.Fatalf("version 2 keeps aliases %v", v2.Aliases)
	}

	// Delete the alias; deleting again is fine.
	expectOK(t, ts.call(t, "DELETE", "registered-models/alias", `{"name":"eta","alias":"challenger"}`))
	expectOK(t, ts.call(t, "DELETE", "registered-models/alias", `{"name":"eta","alias":"challenger"}`))
	_, err := ts.Client.VersionByAlias(ctx, "eta", "challenger")
	expectCode(t, err, registry.CodeInvalidParameterValue)

	// Deleting a version drops the aliases that pointed at it.
	if err := ts.Client.SetAlias(ctx, "eta", "old", "1"); err != nil {
		t.Fatal(err)
	}
	expectOK(t, ts.call(t, "DELETE", "model-versions/delete", `{"name":"eta","version":"1"}`))
	rm = registrytest.Must[*registry.RegisteredModel](t)(ts.Client.GetModel(ctx, "eta"))
	if !reflect.DeepEqual(rm.Aliases, []registry.Alias{{Alias: "champion", Version: "3"}}) {
		t.Fatalf("aliases after version delete = %v", rm.Aliases)
	}
}

func testTags(t *testing.T, open func() server.Store) {
	ts := openServer(t, open)
	ctx := context.Background()
	registrytest.Must[*registry.RegisteredModel](t)(ts.Client.CreateModel(ctx, registry.CreateModelRequest{Name: "eta"}))
	registrytest.Must[*registry.ModelVersion](t)(ts.Client.CreateVersion(ctx, registry.CreateVersionRequest{Name: "eta", Source: "s3://x", Tags: []registry.Tag{{Key: "stage", Value: "dev"}}}))

	if m := expectOK(t, ts.call(t, "POST", "registered-models/set-tag", `{"name":"eta","key":"owner","value":"ml"}`)); len(m) != 0 {
		t.Fatalf("set-tag answered %v", m)
	}
	expectOK(t, ts.call(t, "POST", "registered-models/set-tag", `{"name":"eta","key":"owner","value":"ml-core"}`))
	expectOK(t, ts.call(t, "POST", "registered-models/set-tag", `{"name":"eta","key":"empty","value":""}`))
	rm := registrytest.Must[*registry.RegisteredModel](t)(ts.Client.GetModel(ctx, "eta"))
	if !reflect.DeepEqual(rm.Tags, []registry.Tag{{Key: "empty", Value: ""}, {Key: "owner", Value: "ml-core"}}) {
		t.Fatalf("model tags = %v", rm.Tags)
	}
	expectOK(t, ts.call(t, "DELETE", "registered-models/delete-tag", `{"name":"eta","key":"empty"}`))
	expectOK(t, ts.call(t, "DELETE", "registered-models/delete-tag", `{"name":"eta","key":"never-set"}`))
	rm = registrytest.Must[*registry.RegisteredModel](t)(ts.Client.GetModel(ctx, "eta"))
	if !reflect.DeepEqual(rm.Tags, []registry.Tag{{Key: "owner", Value: "ml-core"}}) {
		t.Fatalf("model tags after delete = %v", rm.Tags)
	}

	if err := ts.Client.SetVersionTag(ctx, "eta", "1", "quality", "good"); err != nil {
		t.Fatal(err)
	}
	expectOK(t, ts.call(t, "DELETE", "model-versions/delete-tag", `{"name":"eta","version":"1","key":"stage"}`))
	v := registrytest.Must[*registry.ModelVersion](t)(ts.Client.GetVersion(ctx, "eta", "1"))
	if !reflect.DeepEqual(v.Tags, []registry.Tag{{Key: "quality", Value: "good"}}) {
		t.Fatalf("version tags = %v", v.Tags)
	}
	if err := ts.Client.SetModelTag(ctx, "eta", string(make([]byte, server.MaxTagKeyLen+1)), "v"); registry.ErrorCode(err) != registry.CodeInvalidParameterValue {
		t.Fatalf("overlong key: %v", err)
	}
}

func testStages(t *testing.T, open func() server.Store) {
	ts := openServer(t, open)
	ctx := context.Background()
	registrytest.Must[*registry.RegisteredModel](t)(ts.Client.CreateModel(ctx, registry.CreateModelRequest{Name: "eta"}))
	for i := 0; i < 3; i++ {
		registrytest.Must[*registry.ModelVersion](t)(ts.Client.CreateVersion(ctx, registry.CreateVersionRequest{Name: "eta", Source: "s3://x"}))
	}
	mv := expectOK(t, ts.call(t, "POST", "model-versions/transition-stage",
		`{"name":"eta","version":"1","stage":"production","archive_existing_versions":false}`))["model_version"].(map[string]any)
	if mv["current_stage"] != "Production" {
		t.Fatalf("stage = %v", mv["current_stage"])
	}
	registrytest.Must[*registry.ModelVersion](t)(ts.Client.TransitionStage(ctx, "eta", "2", "Staging", false))
	v := registrytest.Must[*registry.ModelVersion](t)(ts.Client.TransitionStage(ctx, "eta", "2", "Production", true))
	if v.CurrentStage != registry.StageProduction {
		t.Fatalf("v2 stage = %s", v.CurrentStage)
	}
	if v1 := registrytest.Must[*registry.ModelVersion](t)(ts.Client.GetVersion(ctx, "eta", "1")); v1.CurrentStage != registry.StageArchived {
		t.Fatalf("v1 stage = %s, want Archived", v1.CurrentStage)
	}

	latest := registrytest.Must[[]registry.ModelVersion](t)(ts.Client.LatestVersions(ctx, "eta", "Production"))
	if len(latest) != 1 || latest[0].Version != "2" {
		t.Fatalf("latest Production = %+v", latest)
	}
	all := expectOK(t, ts.call(t, "POST", "registered-models/get-latest-versions", `{"name":"eta"}`))["model_versions"].([]any)
	var got []string
	for _, x := range all {
		m := x.(map[string]any)
		got = append(got, m["current_stage"].(string)+"="+m["version"].(string))
	}
	if want := []string{"None=3", "Production=2", "Archived=1"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("latest of all stages = %v, want %v", got, want)
	}
	many := expectOK(t, ts.call(t, "GET", "registered-models/get-latest-versions?name=eta&stages=None&stages=ARCHIVED", ""))["model_versions"].([]any)
	if len(many) != 2 {
		t.Fatalf("latest of None and Archived = %v", many)
	}
}

func testSearchModels(t *testing.T, open func() server.Store) {
	ts := openServer(t, open)
	ctx := context.Background()
	for i, name := range []string{"eta", "fraud", "eta-v2", "churn", "Eta-old"} {
		team := "ml"
		if i%2 == 1 {
			team = "risk"
		}
		registrytest.Must[*registry.RegisteredModel](t)(ts.Client.CreateModel(ctx, registry.CreateModelRequest{Name: name, Tags: []registry.Tag{{Key: "team", Value: team}}}))
	}
	registrytest.Must[*registry.ModelVersion](t)(ts.Client.CreateVersion(ctx, registry.CreateVersionRequest{Name: "eta", Source: "s3://x"}))

	names := func(ms []registry.RegisteredModel) []string {
		var out []string
		for _, m := range ms {
			out = append(out, m.Name)
		}
		return out
	}
	f := func(req registry.SearchRequest, want ...string) {
		t.Helper()
		ms, next, err := ts.Client.SearchModels(ctx, req)
		if err != nil {
			t.Fatalf("search %+v: %v", req, err)
		}
		if next != "" {
			t.Fatalf("search %+v: unexpected next page token", req)
		}
		if got := names(ms); !reflect.DeepEqual(got, want) {
			t.Fatalf("search %+v = %v, want %v", req, got, want)
		}
	}
	f(registry.SearchRequest{}, "Eta-old", "churn", "eta", "eta-v2", "fraud")
	f(registry.SearchRequest{Filter: "name = 'eta'"}, "eta")
	f(registry.SearchRequest{Filter: "name LIKE 'eta%'"}, "eta", "eta-v2")
	f(registry.SearchRequest{Filter: "name ILIKE 'eta%'"}, "Eta-old", "eta", "eta-v2")
	f(registry.SearchRequest{Filter: "name ILIKE 'e_a%' AND tags.team = 'ml'"}, "Eta-old", "eta", "eta-v2")
	f(registry.SearchRequest{Filter: "tags.team = 'risk'"}, "churn", "fraud")
	f(registry.SearchRequest{Filter: "tags.`team` != 'ml'"}, "churn", "fraud")
	f(registry.SearchRequest{Filter: "tags.missing = 'x'"})
	f(registry.SearchRequest{Filter: "name != 'eta' and name IN ('eta', 'churn', 'x')"}, "churn")
	f(registry.SearchRequest{OrderBy: []string{"name DESC"}}, "fraud", "eta-v2", "eta", "churn", "Eta-old")

	// The MLflow client's own request: it adds the prompt exclusion to
	// every filter, which models without the tag match; prompts are left out.
	registrytest.Must[*registry.RegisteredModel](t)(ts.Client.CreateModel(ctx, registry.CreateModelRequest{Name: "greeting",
		Tags: []registry.Tag{{Key: "mlflow.prompt.is_prompt", Value: "true"}}}))
	clientSearch := func(filter string, want ...string) {
		t.Helper()
		q := url.Values{"max_results": {"100"}, "filter": {filter}}
		raw := expectOK(t, ts.call(t, "GET", "registered-models/search?"+q.Encode(), ""))
		var got []string
		list, _ := raw["registered_models"].([]any)
		for _, m := range list {
			got = append(got, m.(map[string]any)["name"].(string))
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("client search %q = %v, want %v", filter, got, want)
		}
	}
	clientSearch("tag.`mlflow.prompt.is_prompt` != 'true'", "Eta-old", "churn", "eta", "eta-v2", "fraud")
	clientSearch("tags.team = 'risk' AND tag.`mlflow.prompt.is_prompt` != 'true'", "churn", "fraud")
	clientSearch("tags.`mlflow.prompt.is_prompt` = 'true'", "greeting")
	f(registry.SearchRequest{}, "Eta-old", "churn", "eta", "eta-v2", "fraud")

	// The model's latest versions come along in search results.
	ms, _, err := ts.Client.SearchModels(ctx, registry.SearchRequest{Filter: "name='eta'"})
	if err != nil || len(ms) != 1 || len(ms[0].LatestVersions) != 1 {
		t.Fatalf("search with versions: %+v, %v", ms, err)
	}

	// Paging visits every model once, in order.
	var all []string
	req := registry.SearchRequest{MaxResults: 2}
	for page := 0; ; page++ {
		if page > 5 {
			t.Fatal("paging does not end")
		}
		ms, next, err := ts.Client.SearchModels(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) > 2 {
			t.Fatalf("page of %d > max_results", len(ms))
		}
		all = append(all, names(ms)...)
		if next == "" {
			break
		}
		req.PageToken = next
	}
	if want := []string{"Eta-old", "churn", "eta", "eta-v2", "fraud"}; !reflect.DeepEqual(all, want) {
		t.Fatalf("paged = %v, want %v", all, want)
	}
	// The raw response uses MLflow's field names.
	raw := expectOK(t, ts.call(t, "GET", "registered-models/search?max_results=1&order_by=name+ASC", ""))
	if _, ok := raw["registered_models"].([]any); !ok || raw["next_page_token"] == nil {
		t.Fatalf("raw search response: %v", raw)
	}
}

func testSearchVersions(t *testing.T, open func() server.Store) {
	ts := openServer(t, open)
	ctx := context.Background()
	for _, name := range []string{"eta", "fraud"} {
		registrytest.Must[*registry.RegisteredModel](t)(ts.Client.CreateModel(ctx, registry.CreateModelRequest{Name: name}))
		for i := 1; i <= 4; i++ {
			registrytest.Must[*registry.ModelVersion](t)(ts.Client.CreateVersion(ctx, registry.CreateVersionRequest{
				Name: name, Source: fmt.Sprintf("s3://models/%s/%d", name, i), RunID: fmt.Sprintf("run-%d", i%2),
				TrainingJob: fmt.Sprintf("job-%s-%d", name, i), Tags: []registry.Tag{{Key: "parity", Value: strconv.Itoa(i % 2)}},
			}))
		}
	}
	if err := ts.Client.SetAlias(ctx, "eta", "champion", "2"); err != nil {
		t.Fatal(err)
	}
	ids := func(vs []registry.ModelVersion) []string {
		var out []string
		for _, v := range vs {
			out = append(out, v.Name+"/"+v.Version)
		}
		return out
	}
	f := func(req registry.SearchRequest, want ...string) {
		t.Helper()
		vs, _, err := ts.Client.SearchVersions(ctx, req)
		if err != nil {
			t.Fatalf("search %+v: %v", req, err)
		}
		if got := ids(vs); !reflect.DeepEqual(got, want) {
			t.Fatalf("search %+v = %v, want %v", req, got, want)
		}
	}
	byVersion := []string{"name ASC", "version_number ASC"}
	f(registry.SearchRequest{Filter: "name='eta'", OrderBy: byVersion}, "eta/1", "eta/2", "eta/3", "eta/4")
	f(registry.SearchRequest{Filter: "name = 'eta' AND version_number >= 3", OrderBy: byVersion}, "eta/3", "eta/4")
	f(registry.SearchRequest{Filter: "version < 2", OrderBy: byVersion}, "eta/1", "fraud/1")
	f(registry.SearchRequest{Filter: "run_id = 'run-0'", OrderBy: byVersion}, "eta/2", "eta/4", "fraud/2", "fraud/4")
	f(registry.SearchRequest{Filter: "run_id IN ('run-1') AND name = 'fraud'", OrderBy: byVersion}, "fraud/1", "fraud/3")
	f(registry.SearchRequest{Filter: "source_path LIKE 's3://models/fraud/%' AND version != 1", OrderBy: byVersion}, "fraud/2", "fraud/3", "fraud/4")
	f(registry.SearchRequest{Filter: "tags.parity = '1' AND name = 'eta'", OrderBy: byVersion}, "eta/1", "eta/3")
	f(registry.SearchRequest{Filter: "training_job = 'job-eta-4'"}, "eta/4")
	f(registry.SearchRequest{Filter: "name = 'nope'"})
	f(registry.SearchRequest{Filter: "name = 'eta'", OrderBy: []string{"version_number DESC"}}, "eta/4", "eta/3", "eta/2", "eta/1")

	vs, _, err := ts.Client.SearchVersions(ctx, registry.SearchRequest{Filter: "name='eta' AND version=2"})
	if err != nil || len(vs) != 1 || !reflect.DeepEqual(vs[0].Aliases, []string{"champion"}) {
		t.Fatalf("search shows aliases: %+v, %v", vs, err)
	}

	// Paging through all eight versions.
	seen := map[string]bool{}
	req := registry.SearchRequest{MaxResults: 3, OrderBy: byVersion}
	for page := 0; ; page++ {
		if page > 5 {
			t.Fatal("paging does not end")
		}
		vs, next, err := ts.Client.SearchVersions(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range ids(vs) {
			if seen[id] {
				t.Fatalf("%s on two pages", id)
			}
			seen[id] = true
		}
		if next == "" {
			break
		}
		req.PageToken = next
	}
	if len(seen) != 8 {
		t.Fatalf("paging saw %d versions, want 8", len(seen))
	}
}

func testRenameAndDelete(t *testing.T, open func() server.Store) {
	ts := openServer(t, open)
	ctx := context.Background()
	registrytest.Must[*registry.RegisteredModel](t)(ts.Client.CreateModel(ctx, registry.CreateModelRequest{Name: "eta", Tags: []registry.Tag{{Key: "k", Value: "v"}}}))
	for i := 0; i < 2; i++ {
		registrytest.Must[*registry.ModelVersion](t)(ts.Client.CreateVersion(ctx, registry.CreateVersionRequest{Name: "eta", Source: "s3://x"}))
	}
	if err := ts.Client.SetAlias(ctx, "eta", "champion", "2"); err != nil {
		t.Fatal(err)
	}
	rm := expectOK(t, ts.call(t, "POST", "registered-models/rename", `{"name":"eta","new_name":"eta2"}`))["registered_model"].(map[string]any)
	if rm["name"] != "eta2" {
		t.Fatalf("rename answered %v", rm)
	}
	expectError(t, ts.call(t, "GET", "registered-models/get?name=eta", ""), 404, registry.CodeResourceDoesNotExist)
	v := registrytest.Must[*registry.ModelVersion](t)(ts.Client.VersionByAlias(ctx, "eta2", "champion"))
	if v.Name != "eta2" || v.Version != "2" {
		t.Fatalf("version after rename: %+v", v)
	}
	// The version counter moves with the model.
	v3 := registrytest.Must[*registry.ModelVersion](t)(ts.Client.CreateVersion(ctx, registry.CreateVersionRequest{Name: "eta2", Source: "s3://x"}))
	if v3.Version != "3" {
		t.Fatalf("version after rename = %s, want 3", v3.Version)
	}
	// A new model under the old name starts from 1.
	registrytest.Must[*registry.RegisteredModel](t)(ts.Client.CreateModel(ctx, registry.CreateModelRequest{Name: "eta"}))
	if v := registrytest.Must[*registry.ModelVersion](t)(ts.Client.CreateVersion(ctx, registry.CreateVersionRequest{Name: "eta", Source: "s3://y"})); v.Version != "1" {
		t.Fatalf("fresh model's first version = %s", v.Version)
	}

	if err := ts.Client.DeleteModel(ctx, "eta2"); err != nil {
		t.Fatal(err)
	}
	vs, _, err := ts.Client.SearchVersions(ctx, registry.SearchRequest{Filter: "name = 'eta2'"})
	if err != nil || len(vs) != 0 {
		t.Fatalf("versions of a deleted model: %v, %v", vs, err)
	}
	_, err = ts.Client.GetVersion(ctx, "eta2", "1")
	expectCode(t, err, registry.CodeResourceDoesNotExist)
	// Re-creating the name starts over.
	registrytest.Must[*registry.RegisteredModel](t)(ts.Client.CreateModel(ctx, registry.CreateModelRequest{Name: "eta2"}))
	if v := registrytest.Must[*registry.ModelVersion](t)(ts.Client.CreateVersion(ctx, registry.CreateVersionRequest{Name: "eta2", Source: "s3://z"})); v.Version != "1" {
		t.Fatalf("re-created model's first version = %s", v.Version)
	}
}

func testReopen(t *testing.T, open func() server.Store) {
	ctx := context.Background()
	s := open()
	svc := server.NewService(s)
	registrytest.Must[*registry.RegisteredModel](t)(svc.CreateModel(ctx, registry.CreateModelRequest{Name: "eta", Description: "d"}))
	registrytest.Must[*registry.ModelVersion](t)(svc.CreateVersion(ctx, registry.CreateVersionRequest{Name: "eta", Source: "s3://x", Metrics: map[string]float64{"rmse": 1.5}}))
	if err := svc.SetAlias(ctx, "eta", "champion", "1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open()
	defer s.Close()
	svc = server.NewService(s)
	v := registrytest.Must[*registry.ModelVersion](t)(svc.VersionByAlias(ctx, "eta", "champion"))
	if v.Version != "1" || v.Metrics["rmse"] != 1.5 {
		t.Fatalf("after reopen: %+v", v)
	}
	if v := registrytest.Must[*registry.ModelVersion](t)(svc.CreateVersion(ctx, registry.CreateVersionRequest{Name: "eta", Source: "s3://y"})); v.Version != "2" {
		t.Fatalf("numbering after reopen: %s", v.Version)
	}
}

// testConcurrentWriters races writers of one model through the HTTP API: no write
// may be lost and version numbers must be distinct and contiguous.
func testConcurrentWriters(t *testing.T, open func() server.Store) {
	ts := openServer(t, open)
	ctx := context.Background()
	registrytest.Must[*registry.RegisteredModel](t)(ts.Client.CreateModel(ctx, registry.CreateModelRequest{Name: "race"}))
	registrytest.Must[*registry.ModelVersion](t)(ts.Client.CreateVersion(ctx, registry.CreateVersionRequest{Name: "race", Source: "s3://base"}))

	const workers, perWorker = 8, 15
	var wg sync.WaitGroup
	var mu sync.Mutex
	var versions []int
	errs := make(chan error, workers*perWorker*3)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWorker; i++ {
				v, err := ts.Client.CreateVersion(ctx, registry.CreateVersionRequest{Name: "race", Source: fmt.Sprintf("s3://w%d/%d", w, i)})
				if err != nil {
					errs <- err
					continue
				}
				n, _ := strconv.Atoi(v.Version)
				mu.Lock()
				versions = append(versions, n)
				mu.Unlock()
				if err := ts.Client.SetModelTag(ctx, "race", fmt.Sprintf("w%d-%d", w, i), "x"); err != nil {
					errs <- err
				}
				if err := ts.Client.SetVersionTag(ctx, "race", "1", fmt.Sprintf("w%d-%d", w, i), "y"); err != nil {
					errs <- err
				}
			}
		}()
	}
	// Racing creations of one new model: exactly one wins.
	var created, existed int
	var cmu sync.Mutex
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := ts.Client.CreateModel(ctx, registry.CreateModelRequest{Name: "contested"})
			cmu.Lock()
			defer cmu.Unlock()
			switch {
			case err == nil:
				created++
			case registry.ErrorCode(err) == registry.CodeResourceAlreadyExists:
				existed++
			default:
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent write failed: %v", err)
	}
	if created != 1 || existed != workers-1 {
		t.Fatalf("contested create: %d created, %d already existed", created, existed)
	}

	sort.Ints(versions)
	for i, n := range versions {
		if n != i+2 {
			t.Fatalf("versions not distinct and contiguous from 2: %v", versions)
		}
	}
	vs, _, err := ts.Client.SearchVersions(ctx, registry.SearchRequest{Filter: "name = 'race'"})
	if err != nil || len(vs) != workers*perWorker+1 {
		t.Fatalf("stored %d versions (%v), want %d", len(vs), err, workers*perWorker+1)
	}
	m := registrytest.Must[*registry.RegisteredModel](t)(ts.Client.GetModel(ctx, "race"))
	if len(m.Tags) != workers*perWorker {
		t.Fatalf("model has %d tags, want %d", len(m.Tags), workers*perWorker)
	}
	v1 := registrytest.Must[*registry.ModelVersion](t)(ts.Client.GetVersion(ctx, "race", "1"))
	if len(v1.Tags) != workers*perWorker {
		t.Fatalf("version 1 has %d tags, want %d", len(v1.Tags), workers*perWorker)
	}
	if m.LatestVersions[0].Version != strconv.Itoa(workers*perWorker+1) {
		t.Fatalf("latest version = %s", m.LatestVersions[0].Version)
	}
}
