package policy

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/routes"
	"github.com/open-policy-agent/opa/v1/ast"
)

// ExchangeInput is the input document of the exchange decision.
type ExchangeInput struct {
	ProviderID      string
	Claims          map[string]any // verified claims; numbers as json.Number
	ClientIP        string
	Time            time.Time
	RequestedScopes []string // nil = not requested
}

// exchangeInputValue is the input document of the exchange decision.
//
// The claims reach the policy as a lazy object: a claim is converted to an
// OPA value when a rule reads it, and policies read a handful of a token's
// 20-30 claims. checkJSON first makes sure every value is one the
// conversion accepts, so it cannot fail half-way through a decision. The
// whole input is lazy too: building an ordinary object would hash, and so
// convert, every claim.
func exchangeInputValue(in ExchangeInput) (ast.Value, error) {
	if err := checkJSON(in.Claims, 0); err != nil {
		return nil, fmt.Errorf("claims cannot be converted for the policy: %w", err)
	}
	input := map[string]any{
		"provider_id": in.ProviderID,
		"claims":      in.Claims,
		"client_ip":   in.ClientIP,
		"time":        json.Number(strconv.FormatInt(in.Time.Unix(), 10)),
	}
	if in.RequestedScopes != nil {
		rs := make([]any, len(in.RequestedScopes))
		for i, x := range in.RequestedScopes {
			rs[i] = x
		}
		input["requested_scopes"] = rs
	}
	return ast.LazyObject(input), nil
}

// maxClaimDepth bounds the nesting of claim values (decoded JSON is
// bounded by the token's size; this guards hand-built inputs).
const maxClaimDepth = 32

// checkJSON reports the first value of v that is not JSON-shaped: nil,
// bool, string, json.Number, float64, int, int64, []any or map[string]any.
func checkJSON(v any, depth int) error {
	if depth > maxClaimDepth {
		return fmt.Errorf("values nested more than %d deep", maxClaimDepth)
	}
	switch x := v.(type) {
	case nil, bool, string, json.Number, float64, int, int64:
		return nil
	case []any:
		for _, e := range x {
			if err := checkJSON(e, depth+1); err != nil {
				return err
			}
		}
		return nil
	case map[string]any:
		for k, e := range x {
			if err := checkJSON(e, depth+1); err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
		}
		return nil
	}
	return fmt.Errorf("a value of Go type %T (decode the claims from JSON)", v)
}

// ProxyInput is the input document of the proxy decision.
type ProxyInput struct {
	Method   string
	Path     string
	Route    *routes.Route     // nil = no route matched
	Vars     map[string]string // path variables
	Token    *PreparedToken    // nil = no valid token
	ClientIP string
	Time     time.Time
}

// Token is a sidecar token's record as the proxy decision reads it
// (input.token). Keys follow token.Record's JSON names.
type Token struct {
	ProviderID     string
	ProviderName   string
	Subject        string
	Issuer         string
	Claims         map[string]string
	Scopes         []string
	Workspaces     []string // nil = every workspace (input.token.workspaces is null)
	IPRestrictions []string
	IssuedAt       int64 // Unix seconds
	ExpiresAt      int64 // Unix seconds
	DecisionID     string
}

// PreparedToken is a Token converted once for the proxy decision. It is
// immutable: a caller that caches a token record may cache its
// PreparedToken beside it and hand the same one to every decision.
type PreparedToken struct {
	term *ast.Term
}

// PrepareToken converts t for the proxy decision.
func PrepareToken(t Token) *PreparedToken {
	claims := make([][2]*ast.Term, 0, len(t.Claims))
	for k, v := range t.Claims {
		claims = append(claims, [2]*ast.Term{ast.StringTerm(k), ast.StringTerm(v)})
	}
	workspaces := ast.NullTerm()
	if t.Workspaces != nil {
		workspaces = stringArray(t.Workspaces)
	}
	return &PreparedToken{term: ast.ObjectTerm(
		[2]*ast.Term{ast.InternedTerm("provider_id"), ast.StringTerm(t.ProviderID)},
		[2]*ast.Term{ast.InternedTerm("provider_name"), ast.StringTerm(t.ProviderName)},
		[2]*ast.Term{ast.InternedTerm("sub"), ast.StringTerm(t.Subject)},
		[2]*ast.Term{ast.InternedTerm("iss"), ast.StringTerm(t.Issuer)},
		[2]*ast.Term{ast.InternedTerm("claims"), ast.ObjectTerm(claims...)},
		[2]*ast.Term{ast.InternedTerm("scopes"), stringArray(t.Scopes)},
		[2]*ast.Term{ast.InternedTerm("workspaces"), workspaces},
		[2]*ast.Term{ast.InternedTerm("ip_restrictions"), stringArray(t.IPRestrictions)},
		[2]*ast.Term{ast.InternedTerm("iat"), ast.IntNumberTerm(int(t.IssuedAt))},
		[2]*ast.Term{ast.InternedTerm("exp"), ast.IntNumberTerm(int(t.ExpiresAt))},
		[2]*ast.Term{ast.InternedTerm("decision_id"), ast.StringTerm(t.DecisionID)},
	)}
}

// proxyInputValue is the input document of the proxy decision.
func (s *Snapshot) proxyInputValue(in ProxyInput) ast.Value {
	route := ast.NullTerm()
	if in.Route != nil {
		route = s.routeTerm(in.Route)
	}
	vars := make([][2]*ast.Term, 0, len(in.Vars))
	for k, v := range in.Vars {
		vars = append(vars, [2]*ast.Term{ast.StringTerm(k), ast.StringTerm(v)})
	}
	token := ast.NullTerm()
	if in.Token != nil {
		token = in.Token.term
	}
	return ast.NewObject(
		[2]*ast.Term{keyMethod, ast.StringTerm(in.Method)},
		[2]*ast.Term{keyPath, ast.StringTerm(in.Path)},
		[2]*ast.Term{keyRoute, route},
		[2]*ast.Term{keyVars, ast.ObjectTerm(vars...)},
		[2]*ast.Term{keyToken, token},
		[2]*ast.Term{keyClientIP, ast.StringTerm(in.ClientIP)},
		[2]*ast.Term{keyTime, ast.IntNumberTerm(int(in.Time.Unix()))},
	)
}

// Keys of the proxy input, made once (ast.InternedTerm allocates for
// strings OPA has not interned).
var (
	keyMethod   = ast.StringTerm("method")
	keyPath     = ast.StringTerm("path")
	keyRoute    = ast.StringTerm("route")
	keyVars     = ast.StringTerm("vars")
	keyToken    = ast.StringTerm("token")
	keyClientIP = ast.StringTerm("client_ip")
	keyTime     = ast.StringTerm("time")
	keyScopes   = ast.StringTerm("scopes")
)

type routeKey struct{ method, path string }

// routeTerm is input.route for r: the term made when the snapshot was
// compiled for the same route of its table, or a new one.
func (s *Snapshot) routeTerm(r *routes.Route) *ast.Term {
	if t, ok := s.routeTerms[routeKey{r.Method, r.Path}]; ok && slices.Equal(t.scopes, r.Scopes) {
		return t.term
	}
	return newRouteTerm(r)
}

type routeTermEntry struct {
	scopes []string
	term   *ast.Term
}

func newRouteTerm(r *routes.Route) *ast.Term {
	return ast.ObjectTerm(
		[2]*ast.Term{keyMethod, ast.StringTerm(r.Method)},
		[2]*ast.Term{keyPath, ast.StringTerm(r.Path)},
		[2]*ast.Term{keyScopes, stringArray(r.Scopes)},
	)
}

func stringArray(ss []string) *ast.Term {
	ts := make([]*ast.Term, len(ss))
	for i, s := range ss {
		ts[i] = ast.StringTerm(s)
	}
	return ast.ArrayTerm(ts...)
}
