package oidctest

import (
	"crypto/rand"
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// stableID derives a stable numeric ID (as GitHub's decimal strings) from s,
// so the same repository always gets the same repository_id.
func stableID(s string, digits int) string {
	sum := sha1.Sum([]byte(s))
	n := binary.BigEndian.Uint64(sum[:8])
	mod := uint64(1)
	for range digits {
		mod *= 10
	}
	return strconv.FormatUint(mod/10+n%(mod-mod/10), 10)
}

func stableSHA(s string) string {
	sum := sha1.Sum([]byte("sha:" + s))
	return hex.EncodeToString(sum[:])
}

// UUID returns a random version-4 UUID.
func UUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// GitHubClaims returns the payload of a GitHub Actions OIDC token for a push
// to ref of repo ("owner/name"): the 29 claims GitHub sends, with its types
// (IDs and run numbers are decimal strings, times are numbers). iat and nbf
// are now-5s, exp now+5m, jti a random UUID.
func GitHubClaims(iss, aud, repo, ref string, now time.Time) map[string]any {
	owner, _, _ := strings.Cut(repo, "/")
	refType := "branch"
	if strings.HasPrefix(ref, "refs/tags/") {
		refType = "tag"
	}
	workflowRef := repo + "/.github/workflows/deploy.yml@" + ref
	sha := stableSHA(repo + "@" + ref)
	t := now.Unix()
	return map[string]any{
		"jti":                   UUID(),
		"sub":                   "repo:" + repo + ":ref:" + ref,
		"aud":                   aud,
		"ref":                   ref,
		"sha":                   sha,
		"repository":            repo,
		"repository_owner":      owner,
		"repository_owner_id":   stableID("owner:"+owner, 8),
		"run_id":                stableID("run:"+repo+strconv.FormatInt(t, 10), 10),
		"run_number":            "42",
		"run_attempt":           "1",
		"repository_visibility": "private",
		"repository_id":         stableID("repo:"+repo, 9),
		"actor_id":              stableID("actor:"+owner, 8),
		"actor":                 owner + "-bot",
		"workflow":              "deploy",
		"head_ref":              "",
		"base_ref":              "",
		"event_name":            "push",
		"ref_protected":         "true",
		"ref_type":              refType,
		"workflow_ref":          workflowRef,
		"job_workflow_ref":      workflowRef,
		"job_workflow_sha":      sha,
		"runner_environment":    "github-hosted",
		"iss":                   iss,
		"nbf":                   t - 5,
		"exp":                   t + 300,
		"iat":                   t - 5,
	}
}

// CircleCIClaims returns the payload of a CircleCI OIDC token of project
// projectID in organization orgID: aud is the org ID, sub
// "org/<org>/project/<project>/user/<user>", plus the namespaced
// oidc.circleci.com/* claims (context-ids is an array, ssh-rerun a boolean).
// iat is now-5s, exp now+1h; like CircleCI's, the token has no nbf and no jti.
func CircleCIClaims(iss, orgID, projectID string, now time.Time) map[string]any {
	user := "6a3b1f1e-2c4d-4e5f-8a9b-0c1d2e3f4a5b"
	t := now.Unix()
	return map[string]any{
		"iss":                           iss,
		"sub":                           "org/" + orgID + "/project/" + projectID + "/user/" + user,
		"aud":                           orgID,
		"iat":                           t - 5,
		"exp":                           t + 3600,
		"oidc.circleci.com/project-id":  projectID,
		"oidc.circleci.com/context-ids": []string{"0f4e4ba6-9c2f-4b1a-8c1e-3d2b1a0f9e8d", "c1a2b3c4-d5e6-4f70-8a9b-0c1d2e3f4a5b"},
		"oidc.circleci.com/vcs-origin":  "github.com/octo-org/octo-repo",
		"oidc.circleci.com/vcs-ref":     "refs/heads/main",
		"oidc.circleci.com/ssh-rerun":   false,
	}
}
