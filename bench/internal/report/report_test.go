package report

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestMedianPercentileRatio(t *testing.T) {
	nan := math.NaN()
	hundred := make([]float64, 200)
	for i := range hundred {
		hundred[i] = float64(200 - i) // 200..1, unsorted on purpose
	}
	tests := []struct {
		name string
		got  float64
		want float64
	}{
		{"median odd", Median([]float64{3, 1, 2}), 2},
		{"median even", Median([]float64{4, 1, 3, 2}), 2.5},
		{"median one", Median([]float64{7}), 7},
		{"median none", Median(nil), nan},
		{"p50 of 1..200", Percentile(hundred, 50), 100},
		{"p99 of 1..200 is the second slowest", Percentile(hundred, 99), 198},
		{"p100 is the max", Percentile(hundred, 100), 200},
		{"p99 of one sample", Percentile([]float64{5}, 99), 5},
		{"p99 of five samples is the max", Percentile([]float64{1, 5, 2, 4, 3}, 99), 5},
		{"percentile none", Percentile(nil, 99), nan},
		{"percentile out of range", Percentile([]float64{1}, 0), nan},
		{"ratio", Ratio(45, 50), 0.9},
		{"ratio unknown best", Ratio(45, nan), nan},
		{"ratio zero best", Ratio(45, 0), nan},
		{"ratio unknown x", Ratio(nan, 50), nan},
		{"best skips unknown", Best(nan, 3, 9, nan, 4), 9},
		{"best of unknown", Best(nan, nan), nan},
		{"best of none", Best(), nan},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if math.IsNaN(tt.want) != math.IsNaN(tt.got) || (!math.IsNaN(tt.want) && math.Abs(tt.got-tt.want) > 1e-9) {
				t.Fatalf("got %v, want %v", tt.got, tt.want)
			}
		})
	}
	in := []float64{3, 1, 2}
	Median(in)
	Percentile(in, 50)
	if in[0] != 3 || in[1] != 1 {
		t.Fatalf("input reordered: %v", in)
	}
	if F(nan, 1) != "n/a" || F(1.26, 1) != "1.3" {
		t.Fatalf("F: %q %q", F(nan, 1), F(1.26, 1))
	}
}

func TestReplaceSection(t *testing.T) {
	start, end := Markers("tftp")
	hs, he := Markers("http")
	tests := []struct {
		name    string
		doc     string
		want    string
		wantErr string
	}{
		{
			name: "empty document gets the section",
			doc:  "",
			want: start + "\nNEW\n" + end + "\n",
		},
		{
			name: "appended after other text, which is kept",
			doc:  "# Benchmarks\nintro",
			want: "# Benchmarks\nintro\n\n" + start + "\nNEW\n" + end + "\n",
		},
		{
			name: "replaced between markers, other sections untouched",
			doc:  "# B\n\n" + start + "\nold\nlines\n" + end + "\n\n" + hs + "\nhttp stays\n" + he + "\ntrailer\n",
			want: "# B\n\n" + start + "\nNEW\n" + end + "\n\n" + hs + "\nhttp stays\n" + he + "\ntrailer\n",
		},
		{
			name: "markers adjacent",
			doc:  start + end,
			want: start + "\nNEW\n" + end,
		},
		{
			name:    "end before start",
			doc:     end + "\n" + start + "\n",
			wantErr: "out of order",
		},
		{
			name:    "start without end",
			doc:     start + "\nx\n",
			wantErr: "incomplete",
		},
		{
			name:    "repeated section",
			doc:     start + "\n" + end + "\n" + start + "\n" + end + "\n",
			wantErr: "more than once",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReplaceSection([]byte(tt.doc), "tftp", "NEW\n\n")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Fatalf("got\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

func TestWriteSectionTwiceIsStable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	if err := WriteSection(path, "tftp", "one"); err != nil {
		t.Fatal(err)
	}
	if err := WriteSection(path, "http", "web"); err != nil {
		t.Fatal(err)
	}
	if err := WriteSection(path, "tftp", "two"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for _, want := range []string{"# Benchmarks", "two", "web"} {
		if !strings.Contains(doc, want) {
			t.Errorf("document lacks %q:\n%s", want, doc)
		}
	}
	if strings.Contains(doc, "one") {
		t.Errorf("old section body survived:\n%s", doc)
	}
	if strings.Index(doc, "two") > strings.Index(doc, "web") {
		t.Errorf("the rewritten section moved:\n%s", doc)
	}
}

func TestMachineNamesCPUsAndGo(t *testing.T) {
	m := Machine()
	if !strings.Contains(m, "CPUs") || !strings.Contains(m, "go1") {
		t.Fatalf("Machine() = %q", m)
	}
}

func TestHeaderNamesTheCommandAndNote(t *testing.T) {
	h := Header("./bench/cmd/x", "shared CPUs", "extra line.  \n")
	assert.Contains(t, h, "Command: `go run ./bench/cmd/x")
	assert.Contains(t, h, "extra line.  \n**Note:** shared CPUs\n")
	assert.True(t, strings.HasSuffix(h, "\n\n"), "a blank line ends the header")
}
