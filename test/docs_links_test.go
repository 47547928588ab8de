package test

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

var (
	mdLink     = regexp.MustCompile(`\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)
	mdRefLink  = regexp.MustCompile(`(?m)^\s*\[[^\]]+\]:\s+(\S+)`)
	htmlID     = regexp.MustCompile(`<a\s+(?:id|name)="([^"]+)"`)
	inlineCode = regexp.MustCompile("`[^`]*`")
	lineAnchor = regexp.MustCompile(`^L\d+(-L\d+)?$`)
)

// githubSlug is the anchor GitHub gives a heading: lower case, punctuation
// other than - and _ dropped, spaces to -.
func githubSlug(h string) string {
	h = strings.ReplaceAll(h, "`", "")
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(h)) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// anchors returns the anchors of a markdown file: heading slugs (with
// GitHub's -1, -2 for repeats) and explicit <a id>/<a name>.
func anchors(t *testing.T, path string) map[string]bool {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	seen := map[string]int{}
	inFence := false
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			inFence = !inFence
			continue
		}
		if inFence {
			continue
		}
		for _, m := range htmlID.FindAllStringSubmatch(line, -1) {
			out[m[1]] = true
		}
		if !strings.HasPrefix(line, "#") {
			continue
		}
		h := strings.TrimLeft(line, "#")
		if !strings.HasPrefix(h, " ") {
			continue
		}
		s := githubSlug(h)
		if n := seen[s]; n > 0 {
			out[s+"-"+strconv.Itoa(n)] = true
		} else {
			out[s] = true
		}
		seen[s]++
	}
	return out
}

// TestDocsLinks: every relative link in README.md and docs/ points at a
// file of the repository, every #anchor at a heading (or <a id>) of its
// target, and nothing points outside the repository (../shared).
func TestDocsLinks(t *testing.T) {
	files := []string{"../README.md"}
	docs, _ := filepath.Glob("../docs/*.md")
	files = append(files, docs...)
	if len(docs) < 5 {
		t.Fatalf("docs: %v", docs)
	}
	root, _ := filepath.Abs("..")
	cache := map[string]map[string]bool{}
	checked := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(data), "../shared") {
			t.Errorf("%s refers to ../shared, outside the repository: copy what it needs", f)
		}
		inFence := false
		for i, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "```") {
				inFence = !inFence
				continue
			}
			if inFence {
				continue
			}
			line = inlineCode.ReplaceAllString(line, "")
			var targets []string
			for _, m := range mdLink.FindAllStringSubmatch(line, -1) {
				targets = append(targets, m[1])
			}
			for _, m := range mdRefLink.FindAllStringSubmatch(line, -1) {
				targets = append(targets, m[1])
			}
			for _, target := range targets {
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				checked++
				where := f + ":" + strconv.Itoa(i+1)
				path, anchor, _ := strings.Cut(target, "#")
				file := f
				if path != "" {
					file = filepath.Join(filepath.Dir(f), filepath.FromSlash(path))
					abs, _ := filepath.Abs(file)
					if !strings.HasPrefix(abs, root+string(filepath.Separator)) && abs != root {
						t.Errorf("%s: %s points outside the repository", where, target)
						continue
					}
					if _, err := os.Stat(file); err != nil {
						t.Errorf("%s: %s: no such file", where, target)
						continue
					}
				}
				if anchor == "" {
					continue
				}
				if !strings.HasSuffix(file, ".md") {
					if !lineAnchor.MatchString(anchor) {
						t.Errorf("%s: %s: an anchor into a file that is not markdown", where, target)
					}
					continue
				}
				if cache[file] == nil {
					cache[file] = anchors(t, file)
				}
				if !cache[file][anchor] {
					t.Errorf("%s: %s: no heading with the anchor #%s in %s", where, target, anchor, file)
				}
			}
		}
	}
	if checked < 30 {
		t.Fatalf("only %d relative links found; the parser is broken", checked)
	}
}
