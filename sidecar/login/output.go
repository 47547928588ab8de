package login

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// output prints the token as r.format says, or exports it to $GITHUB_ENV.
func (r *runner) output(token string) *Error {
	if r.github {
		return r.exportGitHub(token)
	}
	var out string
	switch r.format {
	case "env":
		out = r.envName + "=" + shellQuote(token) + "\n" + EndpointEnvName + "=" + shellQuote(r.endpoint) + "\n"
	case "json":
		b, _ := json.Marshal(struct { // two strings: cannot fail
			Token       string `json:"token"`
			APIEndpoint string `json:"api_endpoint"`
		}{token, r.endpoint})
		out = string(b) + "\n"
	default:
		out = token + "\n"
	}
	if _, err := io.WriteString(r.stdout, out); err != nil {
		e := outputf("cannot write the token to standard output: %v: the token was issued but not delivered; check where the output goes and run login again", err)
		e.Err = err
		return e
	}
	return nil
}

// exportGitHub masks the token in the job's logs, then appends the token
// and the endpoint to $GITHUB_ENV for the following steps. Nothing secret
// is printed after the mask command.
func (r *runner) exportGitHub(token string) *Error {
	if _, err := fmt.Fprintf(r.stdout, "::add-mask::%s\n", token); err != nil {
		e := outputf("cannot write the ::add-mask:: command to standard output: %v: the token was not exported; run login again", err)
		e.Err = err
		return e
	}
	entries := githubEnvEntry(r.envName, token) + githubEnvEntry(EndpointEnvName, r.endpoint)
	if _, err := io.WriteString(r.githubEnv, entries); err != nil {
		e := outputf("cannot append to $GITHUB_ENV: %v: the token was not exported; run this as a step of a GitHub Actions job, or pass --export none", err)
		e.Err = err
		return e
	}
	if r.format != "token" {
		r.notef("--format %s is ignored when exporting to $GITHUB_ENV; pass --export none to print the token instead", r.format)
	}
	r.notef("%s and %s are set for the following steps of this job (the token is masked in the logs)", r.envName, EndpointEnvName)
	return nil
}

// githubEnvEntry is one $GITHUB_ENV entry in the multi-line form
// NAME<<DELIMITER / value / DELIMITER, with a random delimiter that the
// value does not contain, so that no value can end the entry early and set
// another variable (as @actions/core's exportVariable does).
func githubEnvEntry(name, value string) string {
	delim := "ghadelim_" + rand.Text()
	for strings.Contains(value, delim) || strings.Contains(name, delim) {
		delim = "ghadelim_" + rand.Text()
	}
	return name + "<<" + delim + "\n" + value + "\n" + delim + "\n"
}

// shellQuote quotes s as one POSIX shell word.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
