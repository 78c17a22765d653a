package server

import (
	"strings"
	"testing"

	"github.com/lariat-gw/lariat/registry"
)

func TestFilterMatchesVersions(t *testing.T) {
	v := &registry.ModelVersion{
		Name: "eta", Version: "12", RunID: "r-1", Source: "s3://models/eta/12", CurrentStage: registry.StageProduction,
		Status: registry.StatusReady, TrainingJob: "job-7", Tags: []registry.Tag{{Key: "team", Value: "ML"}, {Key: "note", Value: "it's ok"}},
	}
	f := func(filter string, want bool) {
		t.Helper()
		sf, err := parseFilter(filter, searchVersions)
		if err != nil {
			t.Fatalf("parseFilter(%q): %v", filter, err)
		}
		if got := sf.matchVersion(v); got != want {
			t.Fatalf("%q matched %v, want %v", filter, got, want)
		}
	}
	f("", true)
	f("name = 'eta'", true)
	f(`name = "eta"`, true)
	f("name == 'eta'", true)
	f("name <> 'eta'", false)
	f("NAME = 'eta'", true)
	f("name LIKE 'e%'", true)
	f("name LIKE 'E%'", false)
	f("name ILIKE 'E%'", true)
	f("name LIKE 'e_a'", true)
	f("name LIKE 'e_'", false)
	f("source_path LIKE '%.models%'", false) // '.' is literal
	f("source LIKE 's3://models/%'", true)
	f("version = 12", true)
	f("version_number = '12'", true)
	f("version > 9", true) // numeric, not string, order
	f("version <= 11", false)
	f("version IN (1, 12)", true)
	f("version NOT IN (1, 12)", false)
	f("run_id IN ('r-1', 'r-2')", true)
	f("run_id not in ('r-1')", false)
	f("current_stage = 'Production' and status = 'READY'", true)
	f("training_job = 'job-7'", true)
	f("tags.team = 'ML'", true)
	f("tags.team ILIKE 'ml'", true)
	f("tags.`team` = 'ML'", true)
	f(`tags."team" = 'ML'`, true)
	f("tags.note = 'it''s ok'", true)
	f("tags.absent != 'x'", false)
	f("name = 'eta' AND tags.team = 'ops'", false)
}

// TestFilterMissingTags checks MLflow's server semantics: a clause on a tag
// the model lacks is false whatever the operator, except for the prompt
// marker, whose clauses are replaced by "not tagged is_prompt = 'true'"
// unless the filter asks for prompts.
func TestFilterMissingTags(t *testing.T) {
	plain := &ModelRecord{Name: "eta", Tags: []registry.Tag{{Key: "team", Value: "ml"}}}
	prompt := &ModelRecord{Name: "greeting", Tags: []registry.Tag{{Key: "mlflow.prompt.is_prompt", Value: "true"}}}
	notPrompt := &ModelRecord{Name: "fraud", Tags: []registry.Tag{{Key: "mlflow.prompt.is_prompt", Value: "false"}}}
	f := func(filter string, want ...string) {
		t.Helper()
		sf, err := parseFilter(filter, searchModels)
		if err != nil {
			t.Fatalf("parseFilter(%q): %v", filter, err)
		}
		var got []string
		for _, m := range []*ModelRecord{plain, prompt, notPrompt} {
			if sf.matchModel(m) {
				got = append(got, m.Name)
			}
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("%q matched %v, want %v", filter, got, want)
		}
	}
	// Missing ordinary tags never match.
	f("tags.owner = 'x'")
	f("tags.owner != 'x'")
	f("tags.owner LIKE '%'")
	f("tags.owner ILIKE '%'")
	f("tags.owner IN ('x')")
	f("tags.owner NOT IN ('x')")
	f("tags.team != 'risk'", "eta")
	// What the Python client adds to every search, alone and after a filter.
	f("tag.`mlflow.prompt.is_prompt` != 'true'", "eta", "fraud")
	f("name = 'eta' AND tag.`mlflow.prompt.is_prompt` != 'true'", "eta")
	f("tags.team = 'ml' AND tag.`mlflow.prompt.is_prompt` != 'true'", "eta")
	// Prompts are left out by default, and by any other clause on the marker.
	f("", "eta", "fraud")
	f("tags.`mlflow.prompt.is_prompt` = 'false'", "eta", "fraud")
	f("tags.`mlflow.prompt.is_prompt` LIKE 'x%'", "eta", "fraud")
	// Asking for prompts compares the tag as any other.
	f("tags.`mlflow.prompt.is_prompt` = 'true'", "greeting")
	f("tags.`mlflow.prompt.is_prompt` = 'TRUE'")
	f("tags.`mlflow.prompt.is_prompt` != 'false'", "greeting")
	f("tags.`mlflow.prompt.is_prompt` != 'false' AND name = 'eta'")
}

func TestFilterRejectsBadSyntax(t *testing.T) {
	f := func(filter string, kind searchKind, wantInMessage string) {
		t.Helper()
		_, err := parseFilter(filter, kind)
		if err == nil {
			t.Fatalf("parseFilter(%q) accepted it", filter)
		}
		if registry.ErrorCode(err) != registry.CodeInvalidParameterValue || !strings.Contains(err.Error(), wantInMessage) {
			t.Fatalf("parseFilter(%q) = %v, want INVALID_PARAMETER_VALUE mentioning %q", filter, err, wantInMessage)
		}
	}
	f("name", searchModels, "expected a comparison operator")
	f("name =", searchModels, "expected a quoted value")
	f("name = 'x", searchModels, "unterminated quote")
	f("name = 'x' OR name = 'y'", searchModels, "expected AND")
	f("name = 'x' AND", searchModels, "expected an attribute")
	f("run_id = 'x'", searchModels, "invalid attribute key")
	f("params.x = 'y'", searchVersions, "unknown entity")
	f("name > 'x'", searchModels, "only supported on version")
	f("version LIKE '1%'", searchVersions, "not supported on version")
	f("version = 'one'", searchVersions, "must be an integer")
	f("name IN 'x'", searchModels, "expected '('")
	f("name IN ('x' 'y')", searchModels, "expected ',' or ')'")
	f("name ! 'x'", searchModels, "unexpected '!'")
	f("name = 'x' ;", searchModels, "unexpected character")
}

func TestOrderByAndPageTokens(t *testing.T) {
	keys, err := parseOrderBy([]string{"version_number asc"}, searchVersions)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0] != (orderKey{field: "version"}) || keys[1] != (orderKey{field: "name"}) {
		t.Fatalf("keys = %+v", keys)
	}
	for _, bad := range [][]string{{"name sideways"}, {""}, {"name ASC", "name DESC"}, {"a b c"}} {
		if _, err := parseOrderBy(bad, searchModels); registry.ErrorCode(err) != registry.CodeInvalidParameterValue {
			t.Fatalf("parseOrderBy(%q) = %v", bad, err)
		}
	}

	tok := encodePageToken(40)
	if n, err := decodePageToken(tok); err != nil || n != 40 {
		t.Fatalf("decode(%q) = %d, %v", tok, n, err)
	}
	for _, bad := range []string{"!!", "WzFd", "eyJvZmZzZXQiOi0xfQ=="} {
		if _, err := decodePageToken(bad); registry.ErrorCode(err) != registry.CodeInvalidParameterValue {
			t.Fatalf("decodePageToken(%q) = %v", bad, err)
		}
	}
	// A page token past the end yields an empty page.
	size, offset, err := modelLimits.parse(0, encodePageToken(99))
	start, end, next := pageBounds(offset, size, 5)
	if err != nil || start != 5 || end != 5 || next != "" {
		t.Fatalf("past the end: %d %d %q %v", start, end, next, err)
	}
}

// FuzzParseFilter checks that no filter string makes the parser or the matchers panic.
func FuzzParseFilter(f *testing.F) {
	for _, seed := range []string{
		"name = 'eta'", "name LIKE 'e%' AND tags.team != 'x'", "version IN (1, 2)", "version NOT IN ('3')",
		"tags.`a b` ILIKE '%_'", "run_id = ''", "version >= -1", "name = 'it''s'", "(", "'", "tags.", "name IN (",
	} {
		f.Add(seed)
	}
	v := &registry.ModelVersion{Name: "eta", Version: "3", Tags: []registry.Tag{{Key: "team", Value: "ml"}}}
	m := &ModelRecord{Name: "eta", Tags: []registry.Tag{{Key: "team", Value: "ml"}}}
	f.Fuzz(func(t *testing.T, filter string) {
		if sf, err := parseFilter(filter, searchVersions); err == nil {
			sf.matchVersion(v)
			sf.nameEquals()
		} else if registry.ErrorCode(err) != registry.CodeInvalidParameterValue {
			t.Fatalf("parseFilter(%q) = %v, want an INVALID_PARAMETER_VALUE error", filter, err)
		}
		if sf, err := parseFilter(filter, searchModels); err == nil {
			sf.matchModel(m)
		}
	})
}
