package server

import (
	"cmp"
	"slices"
	"testing"
)

func TestSearchPagePagesThroughSortedMatches(t *testing.T) {
	items := []int{7, 3, 9, 1, 4, 8, 2}
	scan := func(yield func(int) error) error {
		for _, x := range items {
			if err := yield(x); err != nil {
				return err
			}
		}
		return nil
	}
	odd := func(x int) bool { return x%2 == 1 }
	limits := pageLimits{def: 3, max: 10}

	var got []int
	token := ""
	for pages := 0; ; pages++ {
		page, next, err := searchPage(limits, 0, token, scan, odd, cmp.Compare[int])
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, page...)
		if next == "" {
			break
		}
		if pages == 10 {
			t.Fatal("no last page")
		}
		token = next
	}
	if want := []int{1, 3, 7, 9}; !slices.Equal(got, want) {
		t.Fatalf("pages = %v, want %v", got, want)
	}
	if page, _, err := searchPage(limits, 2, "", scan, odd, func(a, b int) int { return cmp.Compare(b, a) }); err != nil || !slices.Equal(page, []int{9, 7}) {
		t.Fatalf("max_results 2, descending = %v, %v", page, err)
	}
	for _, bad := range []int64{-1, 11} {
		if _, _, err := searchPage(limits, bad, "", scan, odd, cmp.Compare[int]); err == nil {
			t.Fatalf("max_results %d accepted", bad)
		}
	}
}
