package graph

import (
	"encoding/xml"
	"strconv"
	"strings"
	"testing"

	"github.com/lariat-gw/lariat/tasks"
)

// svgDoc is the part of the SVG picture the layout checks read.
type svgDoc struct {
	Width  int    `xml:"width,attr"`
	Groups []svgG `xml:"g"`
	Paths  []struct {
		D string `xml:"d,attr"`
	} `xml:"path"`
}

type svgG struct {
	Class string `xml:"class,attr"`
	Rect  struct {
		X string `xml:"x,attr"`
		Y string `xml:"y,attr"`
		W string `xml:"width,attr"`
		H string `xml:"height,attr"`
	} `xml:"rect"`
	Texts []struct {
		X      string `xml:"x,attr"`
		Y      string `xml:"y,attr"`
		Size   string `xml:"font-size,attr"`
		Weight string `xml:"font-weight,attr"`
		Anchor string `xml:"text-anchor,attr"`
		Class  string `xml:"class,attr"`
		Text   string `xml:",chardata"`
	} `xml:"text"`
}

type rect struct{ x, y, w, h float64 }

func (a rect) overlaps(b rect) bool {
	return a.x < b.x+b.w && b.x < a.x+a.w && a.y < b.y+b.h && b.y < a.y+a.h
}

func atof(t *testing.T, s string) float64 {
	t.Helper()
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("attribute %q: %v", s, err)
	}
	return f
}

// checkSVGLayout measures every text of svg with the width estimate
// (filling the live-figure lines with the longest sample) and fails when a
// text leaves its box or label background, when an edge label covers a box,
// or when boxes overlap. It returns every text of the picture, in order.
func checkSVGLayout(t *testing.T, svg string) (doc svgDoc, texts []string) {
	t.Helper()
	if err := xml.Unmarshal([]byte(svg), &doc); err != nil {
		t.Fatalf("not an SVG document: %v\n%s", err, svg)
	}
	var boxes, labels []rect
	for _, g := range doc.Groups {
		r := rect{atof(t, g.Rect.X), atof(t, g.Rect.Y), atof(t, g.Rect.W), atof(t, g.Rect.H)}
		if g.Class == "label" {
			labels = append(labels, r)
		} else {
			boxes = append(boxes, r)
		}
		for _, tx := range g.Texts {
			text := tx.Text
			switch tx.Class {
			case "lat":
				text = SVGStatsSample[0]
			case "cnt":
				text = SVGStatsSample[1]
			}
			texts = append(texts, tx.Text)
			size := float64(svgFont)
			if tx.Size != "" {
				size = atof(t, tx.Size)
			}
			w := textWidth(text, size, tx.Weight == "bold")
			x, y := atof(t, tx.X), atof(t, tx.Y)
			left, right := x, x+w
			if tx.Anchor == "end" {
				left, right = x-w, x
			}
			if left < r.x || right > r.x+r.w || y-size < r.y || y > r.y+r.h {
				t.Errorf("text %q (%.0f..%.0f, baseline %.0f) leaves its box %+v", text, left, right, y, r)
			}
		}
	}
	for i, a := range boxes {
		for _, b := range boxes[i+1:] {
			if a.overlaps(b) {
				t.Errorf("boxes %+v and %+v overlap", a, b)
			}
		}
		for _, l := range labels {
			if a.overlaps(l) {
				t.Errorf("an edge label %+v covers the box %+v", l, a)
			}
		}
	}
	for i, a := range labels {
		for _, b := range labels[i+1:] {
			if a.overlaps(b) {
				t.Errorf("edge labels %+v and %+v overlap", a, b)
			}
		}
	}
	return doc, texts
}

func TestGraphSVGLayout(t *testing.T) {
	for _, name := range []string{"fanout", "chain", "lasso", "policies"} {
		p := loadGraphPlan(t, name)
		svg, err := Render(p, SVG)
		if err != nil {
			t.Fatal(err)
		}
		doc, texts := checkSVGLayout(t, svg)
		all := strings.Join(texts, "\n")
		if strings.Contains(all, "…") {
			t.Errorf("%s: a text is cut:\n%s", name, all)
		}
		if doc.Width > 1280-2*24 {
			t.Errorf("%s: the picture is %d px wide, more than the admin page has at 1280 px", name, doc.Width)
		}
	}
}

// TestGraphSVGContent checks the policies route's picture says everything in
// full: the output paths, the model reference and the version it resolves to,
// and the arm or case of every branch edge.
func TestGraphSVGContent(t *testing.T) {
	p := loadGraphPlan(t, "policies")
	svg, err := Render(p, SVG)
	if err != nil {
		t.Fatal(err)
	}
	_, texts := checkSVGLayout(t, svg)
	all := strings.Join(texts, "\n")
	for _, want := range []string{
		"http · model driver-rank@production\nresolves to version 12\n→ response.body.ranking.control_arm_result\n",
		"→ response.body.ranking.candidate_arm_result\n(ignoreIfExists)\n",
		"\ncontrol\n", "\ncandidate-with-a-long-name\n", "\nindonesia\n", "\ndefault\n",
		"\na_task_name_that_is_much_longer_\nthan_a_box_of_the_old_picture_had_\nroom_for\n",
	} {
		if !strings.Contains("\n"+all+"\n", want) {
			t.Errorf("the picture lacks %q:\n%s", want, all)
		}
	}
	// An unresolved reference says so.
	tasks.ModelRegistry.Provide(p.Env(), fixedModels{})
	svg, _ = Render(p, SVG)
	if !strings.Contains(svg, ">not resolved yet<") {
		t.Errorf("unresolved model: %s", svg)
	}
}

func TestWrapLines(t *testing.T) {
	f := func(s, class string, want ...string) {
		t.Helper()
		var got []string
		for _, l := range wrapLines(s, class) {
			got = append(got, l.text)
			if w := svgTextWidth(l); w > svgMaxBoxW-2*svgPad {
				t.Errorf("line %q is %.0f px wide", l.text, w)
			}
		}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("wrapLines(%q) = %q, want %q", s, got, want)
		}
	}
	f("short", "kind", "short")
	f("", "kind")
	f("→ response.body.ranking.candidate_arm_result (ignoreIfExists)", "kind", "→ response.body.ranking.candidate_arm_result", "(ignoreIfExists)")
	f(strings.Repeat("x", 60), "kind", strings.Repeat("x", 42), strings.Repeat("x", 18))
	f("model a-very-long-model-name-that-goes-on@a-long-alias-name-as-well", "kind", "model a-very-long-model-name-that-goes-on@a-", "long-alias-name-as-well")
}
