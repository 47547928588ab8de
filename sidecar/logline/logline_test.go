package logline

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"math"
	"strings"
	"sync"
	"testing"
	"time"
)

// slogLine is what slog's JSONHandler writes for the same line.
func slogLine(t time.Time, level slog.Level, msg string, with [2]string, s string, i int64, f float64, bo bool, ts time.Time, group string) []byte {
	var buf bytes.Buffer
	lg := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})).With(with[0], with[1])
	r := slog.NewRecord(t, level, msg, 0)
	r.AddAttrs(slog.String("s", s), slog.Int64("i", i), slog.Float64("f", f), slog.Bool("b", bo), slog.Time("ts", ts),
		slog.Group("g", slog.Group(group, slog.String("v", s))), slog.String(s, "key"))
	_ = lg.Handler().Handle(nil, r) //nolint:staticcheck // the JSONHandler does not read the context
	return buf.Bytes()
}

func ourLine(t time.Time, level slog.Level, msg string, with [2]string, s string, i int64, f float64, bo bool, ts time.Time, group string) []byte {
	var buf bytes.Buffer
	w := New(&buf, slog.LevelDebug).With(with[0], with[1])
	l := w.Start(t, level, msg)
	l.String("s", s)
	l.Int("i", i)
	l.Float("f", f)
	l.Bool("b", bo)
	l.Time("ts", ts)
	l.Group("g")
	l.Group(group)
	l.String("v", s)
	l.End()
	l.End()
	l.String(s, "key")
	if err := w.Write(l); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

func TestLineMatchesSlog(t *testing.T) {
	now := time.Date(2026, 12, 6, 15, 4, 5, 123456789, time.UTC)
	zone := time.FixedZone("x", -(3*3600 + 30*60))
	cases := []struct {
		name  string
		t     time.Time
		s     string
		f     float64
		group string
	}{
		{"plain", now, "/workspaces/acme/projects", 0.123, "sidecar"},
		{"zone and zero nanos", time.Date(2026, 1, 2, 3, 4, 5, 0, zone), "", 0, "sidecar"},
		{"escapes", now, "a\"b\\c\nd\re\tf\x00g\x1fh\x7fi<j>&k", 12.5, "x"},
		{"unicode", now, "żółw \u2028\u2029 😀 \xff\xfe bad", 1e-7, "ü"},
		{"big float", now, "x", 1e21, "y"},
		{"small float", now, "x", 123456.789, "y"},
		{"negative float", now, "x", -0.000001, "y"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			with := [2]string{"log", "audit"}
			want := slogLine(c.t, slog.LevelInfo, "proxy", with, c.s, -42, c.f, true, c.t.Add(time.Hour), c.group)
			got := ourLine(c.t, slog.LevelInfo, "proxy", with, c.s, -42, c.f, true, c.t.Add(time.Hour), c.group)
			if !bytes.Equal(got, want) {
				t.Errorf("line differs from slog's JSONHandler\n got: %s\nwant: %s", got, want)
			}
			if !json.Valid(got) {
				t.Errorf("not valid JSON: %s", got)
			}
		})
	}
}

// FuzzLineMatchesSlog: whatever the strings, numbers and times, a Line is
// byte for byte what slog's JSONHandler writes.
//
//	go test -run '^$' -fuzz FuzzLineMatchesSlog -fuzztime 60s ./sidecar/logline/
func FuzzLineMatchesSlog(f *testing.F) {
	f.Add(int64(1796569445123456789), int8(0), "proxy", "log", "audit", "/a/b", int64(200), 0.25, true, int64(0), "sidecar", int32(0))
	f.Add(int64(0), int8(4), "m\u2028", "k\"", "v\x01", "\xff\xfe", int64(-1), 1e-9, false, int64(1<<40), "", int32(-12600))
	f.Fuzz(func(t *testing.T, ns int64, lv int8, msg, wk, wv, s string, i int64, fl float64, bo bool, d int64, group string, off int32) {
		if math.IsNaN(fl) || math.IsInf(fl, 0) || group == "" {
			return // Float's and Group's documented preconditions
		}
		zone := time.FixedZone("z", int(off%(18*3600)))
		tm := time.Unix(0, ns).In(zone)
		ts := tm.Add(time.Duration(d))
		if y := tm.Year(); y < 0 || y >= 10000 {
			return
		}
		if y := ts.Year(); y < 0 || y >= 10000 {
			return
		}
		level := slog.Level(lv)
		with := [2]string{wk, wv}
		want := slogLine(tm, level, msg, with, s, i, fl, bo, ts, group)
		got := ourLine(tm, level, msg, with, s, i, fl, bo, ts, group)
		if !bytes.Equal(got, want) {
			t.Fatalf("line differs from slog's JSONHandler\n got: %q\nwant: %q", got, want)
		}
	})
}

func TestEnabled(t *testing.T) {
	w := New(&bytes.Buffer{}, slog.LevelWarn)
	if w.Enabled(slog.LevelInfo) || !w.Enabled(slog.LevelWarn) || !w.Enabled(slog.LevelError) {
		t.Error("Enabled does not follow the level")
	}
	if d := New(&bytes.Buffer{}, nil); d.Enabled(slog.LevelDebug) || !d.Enabled(slog.LevelInfo) {
		t.Error("a nil level is not slog.LevelInfo")
	}
	lv := new(slog.LevelVar)
	lv.Set(slog.LevelError)
	if v := New(&bytes.Buffer{}, lv); v.Enabled(slog.LevelWarn) {
		t.Error("a LevelVar is not followed")
	}
}

// One Write per line, and lines written concurrently stay whole.
func TestOneWritePerLine(t *testing.T) {
	var cw countingWriter
	w := New(&cw, nil).With("log", "audit")
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for k := range 200 {
				l := w.Start(time.Now(), slog.LevelInfo, "proxy")
				l.Int("g", int64(g))
				l.String("pad", strings.Repeat("x", k*40)) // some lines beyond the pooled buffer's first size
				if err := w.Write(l); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if cw.writes != 1600 {
		t.Fatalf("%d writes for 1600 lines, want one each", cw.writes)
	}
	for n, line := range strings.Split(strings.TrimSuffix(cw.buf.String(), "\n"), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil || m["log"] != "audit" || m["msg"] != "proxy" {
			t.Fatalf("line %d is not a whole line: %v: %.200s", n+1, err, line)
		}
	}
}

type countingWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes++
	return c.buf.Write(p)
}
