package exchange

import (
	"bytes"
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"strings"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/apierr"
)

// buddyExample is the request body shape, quoted in 400 messages.
const buddyExample = `{"provider_id": "<provider uuid>", "web_identity_token": "<OIDC token>"}`

// Buddy response formats (Options.BuddyResponse): how a successful
// POST /user/oidc/tokens carries the token.
const (
	// BuddyResponseText is the token itself, unquoted, as text/plain: what
	// Buddy's own service answers and what its buddy/login action reads.
	BuddyResponseText = "text"
	// BuddyResponseJSONString is the token as a JSON string ("ocs_…"), the
	// form in Buddy's API reference, for clients that JSON-decode the body.
	BuddyResponseJSONString = "json_string"
)

// serveBuddy is POST /user/oidc/tokens, Buddy's exchange endpoint: a JSON
// body {"provider_id", "web_identity_token"} in, the token out (bare text,
// or a JSON string with BuddyResponseJSONString); errors in Buddy's
// {"errors":[{"message"}]} shape.
func (h *Handler) serveBuddy(w http.ResponseWriter, r *http.Request) {
	g, f := h.run(w, r, "buddy", h.parseBuddy)
	if f != nil {
		writeBuddyError(w, f)
		return
	}
	hd := w.Header()
	var body []byte
	if h.buddyJSON {
		body, _ = json.Marshal(g.token) // a token is base62: marshalling cannot fail
		hd.Set("Content-Type", "application/json")
	} else {
		body = []byte(g.token)
		hd.Set("Content-Type", "text/plain; charset=utf-8")
	}
	hd.Set("Cache-Control", "no-store")
	hd.Set("Pragma", "no-cache")
	hd.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// buddyStatus maps a failure to the Buddy endpoint's status.
func buddyStatus(k kind) int {
	switch k {
	case kindBadRequest, kindUnsupportedType, kindInvalidScope:
		return http.StatusBadRequest
	case kindTooLarge:
		return http.StatusRequestEntityTooLarge
	case kindBodyTimeout:
		return http.StatusRequestTimeout
	case kindMethod:
		return http.StatusMethodNotAllowed
	case kindUnknownProvider, kindInvalidToken, kindDenied, kindReplayed:
		return http.StatusUnauthorized
	case kindIPNotAllowed:
		return http.StatusForbidden
	case kindRateLimited:
		return http.StatusTooManyRequests
	}
	return http.StatusServiceUnavailable
}

func writeBuddyError(w http.ResponseWriter, f *failure) {
	switch f.kind {
	case kindRateLimited, kindUnavailable:
		retryAfterHeader(w, f.retryAfter)
	case kindMethod:
		w.Header().Set("Allow", http.MethodPost)
	}
	apierr.Write(w, buddyStatus(f.kind), f.msg)
}

// parseBuddy validates the method, Content-Type and JSON body.
func (h *Handler) parseBuddy(w http.ResponseWriter, r *http.Request) (request, *failure) {
	if r.Method != http.MethodPost {
		return request{}, fail(kindMethod, "%s %s is not supported; send POST %s with Content-Type: application/json and the body %s", r.Method, BuddyPath, BuddyPath, buddyExample)
	}
	if f := checkContentType(r, "application/json", "send the body as JSON: "+buddyExample); f != nil {
		return request{}, f
	}
	body, err := h.readBody(w, r)
	if errors.Is(err, errTooLarge) {
		return request{}, fail(kindTooLarge, "the request body is larger than %d bytes; send only %s", h.maxBody, buddyExample)
	}
	if errors.Is(err, errBodyTimeout) {
		return request{}, h.bodyTimeoutFailure()
	}
	if err != nil {
		return request{}, fail(kindBadRequest, "the request body could not be read: %v", err)
	}
	if bytes.HasPrefix(body, utf8BOM) {
		return request{}, fail(kindBadRequest, "the request body starts with a UTF-8 byte order mark (bytes EF BB BF), which JSON does not allow; send the JSON without it (PowerShell's Set-Content/Out-File -Encoding utf8 write one): %s", buddyExample)
	}
	if k := duplicateMember(body, "provider_id", "web_identity_token"); k != "" {
		return request{}, fail(kindBadRequest, "the request body has %s more than once; send each member once: %s", k, buddyExample)
	}
	var in struct {
		ProviderID       *string `json:"provider_id"`
		WebIdentityToken *string `json:"web_identity_token"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return request{}, fail(kindBadRequest, "%s must be a string, not a JSON %s; send %s", te.Field, te.Value, buddyExample)
		}
		if errors.As(err, &te) {
			return request{}, fail(kindBadRequest, "the request body must be a JSON object, not a JSON %s; send %s", te.Value, buddyExample)
		}
		return request{}, fail(kindBadRequest, "the request body is not valid JSON (%v); send %s", err, buddyExample)
	}
	var id string
	if in.ProviderID != nil {
		id = parseProviderID(*in.ProviderID)
	}
	switch {
	case in.ProviderID == nil || *in.ProviderID == "":
		return request{}, fail(kindBadRequest, "provider_id is missing; set it to the id (a UUID) of the OIDC provider, as in %s", buddyExample)
	case id == "":
		return request{}, fail(kindBadRequest, "provider_id %s is not a UUID; use the provider's id, e.g. 550e8400-e29b-41d4-a716-446655440000", quote(*in.ProviderID))
	case in.WebIdentityToken == nil || *in.WebIdentityToken == "":
		return request{}, fail(kindBadRequest, "web_identity_token is missing; set it to the OIDC token (a JWT) your CI provider issued, as in %s", buddyExample)
	}
	return request{providerID: id, subjectToken: *in.WebIdentityToken}, nil
}

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// duplicateMember returns the first of names that body, a JSON object,
// holds more than once — matched case-insensitively, as encoding/json
// matches struct fields, so "provider_id" and "Provider_ID" are one name —
// or "" if none is repeated. A body that is not a JSON object returns ""
// (json.Unmarshal then says what is wrong).
func duplicateMember(body []byte, names ...string) string {
	dec := json.NewDecoder(bytes.NewReader(body))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return ""
	}
	seen := make(map[string]bool, len(names))
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return ""
		}
		key, _ := t.(string)
		for _, n := range names {
			if strings.EqualFold(key, n) {
				if seen[n] {
					return n
				}
				seen[n] = true
			}
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return ""
		}
	}
	return ""
}

// checkContentType requires the media type want; a charset parameter is
// allowed when it is UTF-8.
func checkContentType(r *http.Request, want, how string) *failure {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return fail(kindBadRequest, "the Content-Type header is missing; send Content-Type: %s and %s", want, how)
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != want {
		return fail(kindBadRequest, "Content-Type %s is not supported; send Content-Type: %s and %s", quote(ct), want, how)
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "utf8") {
		return fail(kindBadRequest, "charset %s is not supported; send UTF-8 (Content-Type: %s; charset=utf-8)", quote(cs), want)
	}
	return nil
}
