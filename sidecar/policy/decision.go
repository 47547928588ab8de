package policy

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Reason is one reason for a denial.
type Reason struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	Condition string `json:"condition,omitempty"`
	Claim     string `json:"claim,omitempty"`
	Operator  string `json:"operator,omitempty"`
	Expected  any    `json:"expected,omitempty"`
	Actual    any    `json:"actual,omitempty"`
	Missing   bool   `json:"missing,omitempty"`
	Clause    int    `json:"clause,omitempty"` // a failed condition's position in its provider's conditions, from 1
}

// ExchangeDecision is the result of the exchange decision.
type ExchangeDecision struct {
	Allow           bool     `json:"allow"`
	Reasons         []Reason `json:"reasons"`
	Scopes          []string `json:"scopes"`
	InvalidScopes   []string `json:"invalid_scopes"`
	Workspaces      []string `json:"workspaces"` // nil = all
	IPRestrictions  []string `json:"ip_restrictions"`
	LifetimeSeconds int64    `json:"lifetime_seconds"`
	ProviderName    string   `json:"provider_name"`
	Revision        string   `json:"revision"`

	doc ast.Object // the decision document as the policy returned it
}

// Document returns the decision document exactly as the policy returned it
// (data.sidecar.exchange.decision): what `opa eval` prints for the same
// input, e.g. "reasons": [] for an allow and every field of each reason.
func (d *ExchangeDecision) Document() (any, error) {
	if d.doc == nil {
		return nil, fmt.Errorf("no decision document")
	}
	return ast.JSON(d.doc)
}

// ProxyDecision is the result of the proxy decision.
type ProxyDecision struct {
	Allow   bool
	Status  int
	Code    string
	Message string
}

// decodeExchange reads the exchange decision object and refuses an
// inconsistent one (fail closed).
func decodeExchange(m ast.Object, revision string) (*ExchangeDecision, error) {
	d := &ExchangeDecision{Revision: revision, doc: m}
	d.Allow = boolField(m, "allow")
	d.Scopes = stringsField(m, "scopes")
	d.InvalidScopes = stringsField(m, "invalid_scopes")
	if ws := field(m, "workspaces"); ws != nil && ws.Compare(ast.Null{}) != 0 {
		d.Workspaces = stringsField(m, "workspaces")
		if d.Workspaces == nil {
			d.Workspaces = []string{}
		}
	}
	d.IPRestrictions = stringsField(m, "ip_restrictions")
	d.LifetimeSeconds = intField(m, "lifetime_seconds")
	d.ProviderName = stringField(m, "provider_name")
	if rs, ok := field(m, "reasons").(*ast.Array); ok && rs.Len() > 0 {
		v, err := ast.JSON(rs)
		if err != nil {
			return nil, fmt.Errorf("%s: reasons: %w", ExchangeQuery, err)
		}
		for _, r := range v.([]any) {
			d.Reasons = append(d.Reasons, reasonOf(r))
		}
	}
	// Failed conditions first, in the order they were written (their
	// clause number); every other reason after them, by message.
	sort.SliceStable(d.Reasons, func(i, j int) bool {
		a, b := d.Reasons[i], d.Reasons[j]
		if (a.Clause > 0) != (b.Clause > 0) {
			return a.Clause > 0
		}
		if a.Clause != b.Clause {
			return a.Clause < b.Clause
		}
		return a.Message < b.Message
	})
	// Fail closed: an allow must carry a positive lifetime and no reasons;
	// a denial always has at least one reason.
	if d.Allow && (d.LifetimeSeconds <= 0 || len(d.Reasons) > 0) {
		return nil, fmt.Errorf("%s allowed with lifetime %d and %d reasons: refusing an inconsistent decision", ExchangeQuery, d.LifetimeSeconds, len(d.Reasons))
	}
	if !d.Allow && len(d.Reasons) == 0 {
		d.Reasons = []Reason{{Code: "denied", Message: "the policy denied this token without giving a reason"}}
	}
	return d, nil
}

// decodeProxy reads the proxy decision object and refuses an inconsistent
// one (fail closed).
func decodeProxy(m ast.Object) (*ProxyDecision, error) {
	d := &ProxyDecision{
		Allow:   boolField(m, "allow"),
		Status:  int(intField(m, "status")),
		Code:    stringField(m, "code"),
		Message: stringField(m, "message"),
	}
	if d.Allow && d.Status != 200 {
		return nil, fmt.Errorf("%s allowed with status %d: refusing an inconsistent decision", ProxyQuery, d.Status)
	}
	if !d.Allow && (d.Status < 400 || d.Status > 599) {
		return nil, fmt.Errorf("%s denied with status %d: want a 4xx or 5xx status", ProxyQuery, d.Status)
	}
	return d, nil
}

// field is the value of key in m, or nil.
func field(m ast.Object, key string) ast.Value {
	k, ok := fieldKeys[key]
	if !ok {
		k = ast.StringTerm(key)
	}
	if t := m.Get(k); t != nil {
		return t.Value
	}
	return nil
}

// fieldKeys are the decision keys the engine reads, made once.
var fieldKeys = func() map[string]*ast.Term {
	m := map[string]*ast.Term{}
	for _, k := range []string{"allow", "reasons", "scopes", "invalid_scopes", "workspaces", "ip_restrictions", "lifetime_seconds", "provider_name", "status", "code", "message"} {
		m[k] = ast.StringTerm(k)
	}
	return m
}()

func boolField(m ast.Object, key string) bool {
	b, _ := field(m, key).(ast.Boolean)
	return bool(b)
}

func stringField(m ast.Object, key string) string {
	s, _ := field(m, key).(ast.String)
	return string(s)
}

func intField(m ast.Object, key string) int64 {
	n, _ := field(m, key).(ast.Number)
	i, _ := n.Int64()
	return i
}

// stringsField is the strings of the array (or set) at key; nil when there
// is none.
func stringsField(m ast.Object, key string) []string {
	var out []string
	add := func(t *ast.Term) {
		if s, ok := t.Value.(ast.String); ok {
			out = append(out, string(s))
		}
	}
	switch v := field(m, key).(type) {
	case *ast.Array:
		out = make([]string, 0, v.Len())
		v.Foreach(add)
	case ast.Set:
		out = make([]string, 0, v.Len())
		v.Foreach(add)
	}
	return out
}

func reasonOf(v any) Reason {
	if s, ok := v.(string); ok {
		return Reason{Code: "denied", Message: s}
	}
	m, _ := v.(map[string]any)
	r := Reason{Expected: m["expected"], Actual: m["actual"]}
	r.Code, _ = m["code"].(string)
	r.Message, _ = m["message"].(string)
	r.Condition, _ = m["condition"].(string)
	r.Claim, _ = m["claim"].(string)
	r.Operator, _ = m["operator"].(string)
	r.Missing, _ = m["missing"].(bool)
	if n, ok := m["clause"].(json.Number); ok {
		c, _ := n.Int64()
		r.Clause = int(c)
	}
	if r.Message == "" {
		b, _ := json.Marshal(m)
		r.Message = string(b)
	}
	if r.Code == "" {
		r.Code = "denied"
	}
	return r
}

// ReasonSummary renders reasons as one line: "a; b; c".
func ReasonSummary(rs []Reason) string {
	msgs := make([]string, len(rs))
	for i, r := range rs {
		msgs[i] = r.Message
	}
	return strings.Join(msgs, "; ")
}
