package revocation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// BulkResult is the admin endpoint's answer to a bulk revocation.
type BulkResult struct {
	ProviderID    string `json:"provider_id"`
	ProviderKnown bool   `json:"provider_known"`
	Epoch         int64  `json:"epoch"`
	CutOff        string `json:"cut_off"`
	Revoked       string `json:"revoked"`
	Published     bool   `json:"published"`
	Note          string `json:"note,omitempty"`
}

// RevokeProviderTokens calls POST <adminURL>/_sidecar/admin/v1/providers/<id>/revoke-tokens
// with the admin credential (the CLI's `admin revoke-provider-tokens`).
// client nil means a client with a 30 s timeout.
func RevokeProviderTokens(ctx context.Context, client *http.Client, adminURL, providerID, credential string) (*BulkResult, error) {
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	u, err := url.Parse(adminURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--admin-url %q must be the sidecar's admin listener, e.g. http://127.0.0.1:9090", adminURL)
	}
	if providerID == "" {
		return nil, errors.New("--provider-id is required: the id of the provider whose tokens to revoke (providers.yaml)")
	}
	if credential == "" {
		return nil, errors.New("the admin credential is empty: set the variable named by --token-env (default OIDC_SIDECAR_ADMIN_TOKEN)")
	}
	endpoint := strings.TrimSuffix(u.String(), "/") + "/_sidecar/admin/v1/providers/" + url.PathEscape(providerID) + "/revoke-tokens"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+credential)
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("POST %s: %w (is --admin-url the sidecar's admin_listen address?)", endpoint, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		msg := strings.TrimSpace(string(body))
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		hint := ""
		switch resp.StatusCode {
		case http.StatusUnauthorized:
			hint = " (check the admin credential)"
		case http.StatusNotFound:
			hint = " (is this sidecar version older than the bulk revocation endpoint, or --admin-url not the admin listener?)"
		}
		return nil, fmt.Errorf("HTTP %d: %s%s", resp.StatusCode, msg, hint)
	}
	var r BulkResult
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("the answer is not the expected JSON: %v: %s", err, body)
	}
	return &r, nil
}
