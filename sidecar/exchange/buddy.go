package exchange

import (
	"bytes"
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"strings"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/apierr"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/oidc"
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
func buddyStatus(k class) int {
	switch k {
	case classBadRequest, classUnsupportedType, classInvalidScope:
		return http.StatusBadRequest
	case classTooLarge:
		return http.StatusRequestEntityTooLarge
	case classBodyTimeout:
		return http.StatusRequestTimeout
	case classMethod:
		return http.StatusMethodNotAllowed
	case classUnknownProvider, classInvalidToken, classDenied, classReplayed:
		return http.StatusUnauthorized
	case classIPNotAllowed:
		return http.StatusForbidden
	case classRateLimited:
		return http.StatusTooManyRequests
	}
	return http.StatusServiceUnavailable
}

func writeBuddyError(w http.ResponseWriter, f *failure) {
	switch f.class {
	case classRateLimited, classUnavailable:
		retryAfterHeader(w, f.retryAfter)
	case classMethod:
		w.Header().Set("Allow", http.MethodPost)
	}
	apierr.Write(w, buddyStatus(f.class), f.msg)
}

// parseBuddy validates the method, Content-Type and JSON body.
func (h *Handler) parseBuddy(w http.ResponseWriter, r *http.Request) (request, *failure) {
	if r.Method != http.MethodPost {
		return request{}, fail(classMethod, "%s %s is not supported; send POST %s with Content-Type: application/json and the body %s", r.Method, BuddyPath, BuddyPath, buddyExample)
	}
	if f := checkContentType(r, "application/json", "send the body as JSON: "+buddyExample); f != nil {
		return request{}, f
	}
	body, err := h.readBody(w, r)
	if errors.Is(err, errTooLarge) {
		return request{}, fail(classTooLarge, "the request body is larger than %d bytes; send only %s", h.maxBody, buddyExample)
	}
	if errors.Is(err, errBodyTimeout) {
		return request{}, h.bodyTimeoutFailure()
	}
	if err != nil {
		return request{}, fail(classBadRequest, "the request body could not be read: %v", err)
	}
	if bytes.HasPrefix(body, utf8BOM) {
		return request{}, fail(classBadRequest, "the request body starts with a UTF-8 byte order mark (bytes EF BB BF), which JSON does not allow; send the JSON without it (PowerShell's Set-Content/Out-File -Encoding utf8 write one): %s", buddyExample)
	}
	if id, jwt, ok := decodeBuddy(body); ok {
		// The common case, in one pass; anything unusual (a duplicate, a
		// wrong type, bad JSON) takes the path below for its message.
		if id != "" {
			return request{providerID: id, subjectToken: jwt}, nil
		}
	}
	if k := duplicateMember(body, "provider_id", "web_identity_token"); k != "" {
		return request{}, fail(classBadRequest, "the request body has %s more than once; send each member once: %s", k, buddyExample)
	}
	var in struct {
		ProviderID       *string `json:"provider_id"`
		WebIdentityToken *string `json:"web_identity_token"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return request{}, fail(classBadRequest, "%s must be a string, not a JSON %s; send %s", te.Field, te.Value, buddyExample)
		}
		if errors.As(err, &te) {
			return request{}, fail(classBadRequest, "the request body must be a JSON object, not a JSON %s; send %s", te.Value, buddyExample)
		}
		return request{}, fail(classBadRequest, "the request body is not valid JSON (%v); send %s", err, buddyExample)
	}
	var id string
	if in.ProviderID != nil {
		id = parseProviderID(*in.ProviderID)
	}
	switch {
	case in.ProviderID == nil || *in.ProviderID == "":
		return request{}, fail(classBadRequest, "provider_id is missing; set it to the id (a UUID) of the OIDC provider, as in %s", buddyExample)
	case id == "":
		return request{}, fail(classBadRequest, "provider_id %s is not a UUID; use the provider's id, e.g. 550e8400-e29b-41d4-a716-446655440000", quote(*in.ProviderID))
	case in.WebIdentityToken == nil || *in.WebIdentityToken == "":
		return request{}, fail(classBadRequest, "web_identity_token is missing; set it to the OIDC token (a JWT) your CI provider issued, as in %s", buddyExample)
	}
	return request{providerID: id, subjectToken: *in.WebIdentityToken}, nil
}

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// decodeBuddy reads a well-formed exchange body in one pass: a JSON object
// holding provider_id (a provider ID) and web_identity_token (a non-empty
// string) once each — names matched case-insensitively, as encoding/json
// matches struct fields —, other members ignored, nothing after it. ok is
// false for any other body; parseBuddy then decodes it again, slowly, to
// say what is wrong. An id of "" with ok means a member is missing or
// empty or the id is not a UUID (parseBuddy's messages again).
func decodeBuddy(body []byte) (id, jwt string, ok bool) {
	m, err := oidc.DecodeObject(body) // refuses duplicates by exact name
	if err != nil {
		return "", "", false
	}
	var rawID, tok any
	seenID, seenTok := false, false
	for k, v := range m {
		switch {
		case strings.EqualFold(k, "provider_id"):
			if seenID {
				return "", "", false // "provider_id" and "Provider_ID"
			}
			rawID, seenID = v, true
		case strings.EqualFold(k, "web_identity_token"):
			if seenTok {
				return "", "", false
			}
			tok, seenTok = v, true
		}
	}
	ids, ok1 := rawID.(string)
	toks, ok2 := tok.(string)
	if (seenID && !ok1) || (seenTok && !ok2) {
		return "", "", false // null or another type: the full path's message
	}
	if ids == "" || toks == "" {
		return "", "", true
	}
	return parseProviderID(ids), toks, true
}

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
		return fail(classBadRequest, "the Content-Type header is missing; send Content-Type: %s and %s", want, how)
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != want {
		return fail(classBadRequest, "Content-Type %s is not supported; send Content-Type: %s and %s", quote(ct), want, how)
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "utf8") {
		return fail(classBadRequest, "charset %s is not supported; send UTF-8 (Content-Type: %s; charset=utf-8)", quote(cs), want)
	}
	return nil
}
