package registry

import "testing"

func TestParseRef(t *testing.T) {
	f := func(ref string, want modelRef) {
		t.Helper()
		got, err := parseRef(ref)
		if err != nil {
			t.Fatalf("parseRef(%q): %v", ref, err)
		}
		if got != want {
			t.Fatalf("parseRef(%q) = %+v, want %+v", ref, got, want)
		}
	}
	f("eta@champion", modelRef{name: "eta", selector: "champion", kind: refAlias})
	f("models:/eta@champion", modelRef{name: "eta", selector: "champion", kind: refAlias})
	f("eta/3", modelRef{name: "eta", selector: "3", kind: refVersion})
	f("eta/007", modelRef{name: "eta", selector: "7", kind: refVersion})
	f("eta/latest", modelRef{name: "eta", kind: refLatest})
	f("eta/production", modelRef{name: "eta", selector: "Production", kind: refStage})

	bad := func(ref string) {
		t.Helper()
		if err := ValidateRef(ref); err == nil {
			t.Fatalf("ValidateRef(%q) accepted it", ref)
		}
	}
	bad("")
	bad("eta")
	bad("@champion")
	bad("eta@")
	bad("eta@v1")
	bad("eta/")
	bad("/3")
	bad("eta/0")
	bad("eta/-2")
	bad("eta/whatever")
	bad("eta/3/4")
}
