package svgplot

import (
	"encoding/xml"
	"strings"
	"testing"
)

func TestWriteIsWellFormedAndEscaped(t *testing.T) {
	s := String(Chart{Title: "acc <&> loss", XLabel: "round", YLabel: "accuracy", ID: "c1"},
		Series{Name: "global", X: []float64{1, 2, 3}, Y: []float64{0.2, 0.5, 0.7}},
		Series{Name: "local\"", X: []float64{1}, Y: []float64{0.3}})
	dec := xml.NewDecoder(strings.NewReader(s))
	for {
		_, err := dec.Token()
		if err != nil {
			if err.Error() == "EOF" {
				break
			}
			t.Fatalf("not well-formed XML: %v\n%s", err, s)
		}
	}
	for _, want := range []string{`id="c1"`, "acc &lt;&amp;&gt; loss", `data-series="global" data-points="3"`, `<circle class="series" data-series="local&#34;"`, ">round<", ">accuracy<"} {
		if !strings.Contains(s, want) {
			t.Errorf("missing %q in\n%s", want, s)
		}
	}
}

func TestTicksCoverRange(t *testing.T) {
	for _, c := range []struct{ lo, hi float64 }{{0, 1}, {0.13, 0.97}, {1, 37}, {-5, 5}, {1e-4, 3e-3}} {
		ts := ticks(c.lo, c.hi, 5)
		if len(ts) < 2 || len(ts) > 12 {
			t.Fatalf("ticks(%v, %v) = %v", c.lo, c.hi, ts)
		}
		for _, v := range ts {
			if v < c.lo-1e-12 || v > c.hi+1e-9 {
				t.Fatalf("tick %v outside [%v, %v]", v, c.lo, c.hi)
			}
		}
	}
}

func TestNonFinitePointsSkipped(t *testing.T) {
	nan := 0.0
	nan = nan / nan
	s := String(Chart{Title: "t"}, Series{Name: "a", X: []float64{1, 2, 3}, Y: []float64{1, nan, 2}})
	if !strings.Contains(s, `data-points="2"`) {
		t.Fatalf("NaN point drawn:\n%s", s)
	}
}
