package chart

import (
	"bytes"
	"image/png"
	"os"
	"path/filepath"
	"testing"
)

func TestChartsDecode(t *testing.T) {
	dir := t.TempDir()
	var bars []Bar
	for i := 0; i < 40; i++ {
		bars = append(bars, Bar{Lo: 0.1 + float64(i)*0.01, Hi: 0.11 + float64(i)*0.01, Count: float64((i * 37) % 23)})
	}
	s := []Series{{Name: "a", X: []float64{0.1, 0.2, 0.4}, Y: []float64{0, 0.5, 1}}, {Name: "b", X: []float64{0.15, 0.3}, Y: []float64{0.2, 1}}}
	cats := []Category{{Label: "1 G", Values: []float64{10, 20}}, {Label: "32 G", Values: []float64{3000, 12000}}}
	for name, draw := range map[string]func(*bytes.Buffer) error{
		"hist": func(b *bytes.Buffer) error {
			return Histogram(b, Options{Title: "latency", XLabel: "ms", YLabel: "count"}, bars)
		},
		"empty": func(b *bytes.Buffer) error { return Histogram(b, Options{Title: "none"}, nil) },
		"lines": func(b *bytes.Buffer) error { return Lines(b, Options{Title: "cdf", YMin: 0, YMax: 1}, s) },
		"bars":  func(b *bytes.Buffer) error { return Bars(b, Options{Title: "ops/s"}, []string{"x", "y"}, cats) },
	} {
		var b bytes.Buffer
		if err := draw(&b); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		img, err := png.Decode(bytes.NewReader(b.Bytes()))
		if err != nil {
			t.Fatalf("%s: decode: %v", name, err)
		}
		if img.Bounds().Dx() != 960 || img.Bounds().Dy() != 600 {
			t.Fatalf("%s: size %v", name, img.Bounds())
		}
		_ = os.WriteFile(filepath.Join(dir, name+".png"), b.Bytes(), 0o644)
	}
}

func TestTicks(t *testing.T) {
	for _, tc := range []struct {
		lo, hi float64
		n      int
		want   []float64
	}{
		{0, 1, 5, []float64{0, 0.2, 0.4, 0.6, 0.8, 1}},
		{0.13, 0.61, 5, []float64{0.2, 0.3, 0.4, 0.5, 0.6}},
		{0, 1000, 4, []float64{0, 200, 400, 600, 800, 1000}},
	} {
		got := ticks(tc.lo, tc.hi, tc.n)
		if len(got) != len(tc.want) {
			t.Fatalf("ticks(%v,%v) = %v, want %v", tc.lo, tc.hi, got, tc.want)
		}
		for i := range got {
			if d := got[i] - tc.want[i]; d > 1e-9 || d < -1e-9 {
				t.Fatalf("ticks(%v,%v) = %v, want %v", tc.lo, tc.hi, got, tc.want)
			}
		}
	}
}
