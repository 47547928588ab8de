package admin

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/provider"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/scope"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/trust"
)

// TypeInfo is what the console needs to know about a provider type. All of
// it is derived from the type's provider.Kind (by asking it about empty
// and probe providers), not written down a second time.
type TypeInfo struct {
	Type  provider.Type `json:"type"`
	Label string        `json:"label"`
	// IssuerFixed is the issuer every provider of the type has ("" if none).
	IssuerFixed string `json:"issuer_fixed,omitempty"`
	// IssuerPrefix is set when the issuer is derived from organization_id.
	IssuerPrefix string `json:"issuer_prefix,omitempty"`
	// IssuerEditable: the issuer is typed in.
	IssuerEditable bool `json:"issuer_editable"`
	// AudienceDefault is the audience when none is set.
	AudienceDefault string `json:"audience_default,omitempty"`
	// AudienceFromOrganization: the audience is organization_id.
	AudienceFromOrganization bool `json:"audience_from_organization"`
	// Required lists the fields an empty provider of the type misses.
	Required []string `json:"required"`
	// Claims are the claims its tokens carry (nil: any, free text).
	Claims []string `json:"claims"`
	// RequiredMessage is the trust_conditions rule, if the type has one
	// (GitHub's repository_owner pin).
	RequiredMessages map[string]string `json:"required_messages"`
}

// typeLabels are the names Buddy's type menu shows.
var typeLabels = map[provider.Type]string{
	provider.GitHubActions: "GitHub Actions",
	provider.CircleCI:      "CircleCI",
	provider.Other:         "Other provider",
}

// Types describes every provider type, in the order of Buddy's menu.
func Types() []TypeInfo {
	var out []TypeInfo
	for _, t := range provider.Types() {
		k, _ := provider.KindOf(t)
		empty := &provider.Provider{Type: t}
		ti := TypeInfo{Type: t, Label: typeLabels[t], Claims: provider.KnownClaims(t), RequiredMessages: map[string]string{}}
		if ti.Label == "" {
			ti.Label = string(t)
		}
		base := k.Issuer(empty)
		withIssuer := k.Issuer(&provider.Provider{Type: t, Issuer: "https://probe.invalid"})
		withOrg := k.Issuer(&provider.Provider{Type: t, OrganizationID: "ORG"})
		switch {
		case withIssuer == "https://probe.invalid":
			ti.IssuerEditable = true
		case withOrg != base:
			ti.IssuerPrefix = strings.TrimSuffix(withOrg, "ORG")
		default:
			ti.IssuerFixed = base
		}
		ti.AudienceDefault = k.Audience(empty)
		ti.AudienceFromOrganization = k.Audience(&provider.Provider{Type: t, OrganizationID: "ORG"}) == "ORG"
		k.Validate(empty, func(field, msg string, warning bool) {
			if !warning {
				ti.Required = append(ti.Required, field)
				ti.RequiredMessages[field] = msg
			}
		})
		out = append(out, ti)
	}
	return out
}

// ScopeGroup is one group of scope checkboxes.
type ScopeGroup struct {
	Name   string      `json:"name"`
	Label  string      `json:"label"`
	Scopes []ScopeInfo `json:"scopes"`
}

// ScopeInfo is one scope with what it implies.
type ScopeInfo struct {
	Name    string   `json:"name"`
	Meaning string   `json:"meaning"`
	Implies []string `json:"implies"`
}

var groupLabels = map[scope.Group]string{
	scope.GroupOAuth:  "Scopes (Buddy's OAuth 2.0 scopes)",
	scope.GroupNewer:  "Newer scopes",
	scope.GroupLegacy: "Legacy (removed releases feature)",
}

// ScopeGroups are the scopes as Buddy groups them, with their implications.
func ScopeGroups() []ScopeGroup {
	var out []ScopeGroup
	idx := map[scope.Group]int{}
	for _, s := range scope.Scopes() {
		i, ok := idx[s.Group]
		if !ok {
			i = len(out)
			idx[s.Group] = i
			out = append(out, ScopeGroup{Name: string(s.Group), Label: groupLabels[s.Group]})
		}
		imp := scope.ImpliedBy(s.Name)
		if imp == nil {
			imp = []string{}
		}
		out[i].Scopes = append(out[i].Scopes, ScopeInfo{s.Name, s.Meaning, imp})
	}
	return out
}

// Operators are the trust language's operators, in the builder's menu
// order.
var Operators = []trust.Op{trust.OpIs, trust.OpIsNot, trust.OpOneOf, trust.OpNotOneOf, trust.OpMatches, trust.OpNotMatches, trust.OpExists}

// Schema is the data the console's forms are rendered from.
type Schema struct {
	Types        []TypeInfo   `json:"types"`
	Lifetimes    []string     `json:"lifetimes"`
	Default      string       `json:"default_lifetime"`
	ScopeGroups  []ScopeGroup `json:"scope_groups"`
	Operators    []trust.Op   `json:"operators"`
	DenialDetail []string     `json:"denial_details"`
}

// FormSchema returns the console's form data.
func FormSchema() Schema {
	s := Schema{Types: Types(), ScopeGroups: ScopeGroups(), Operators: Operators, Default: provider.FormatLifetime(provider.DefaultLifetime)}
	for _, d := range provider.Lifetimes() {
		s.Lifetimes = append(s.Lifetimes, provider.FormatLifetime(d))
	}
	for _, d := range provider.DenialDetails() {
		s.DenialDetail = append(s.DenialDetail, string(d))
	}
	return s
}

func (h *Handler) schema(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, FormSchema())
}

// Row is one condition of the builder.
type Row struct {
	Claim  string   `json:"claim"`
	Op     trust.Op `json:"op"`
	Values []string `json:"values"`
}

// parseConditions turns the text form into builder rows with the trust
// language's own parser.
func (h *Handler) parseConditions(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Text string `json:"text"`
	}
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeErrors(w, []FieldError{{"", `the body must be {"text": "..."}`}})
		return
	}
	rows := []Row{}
	if strings.TrimSpace(req.Text) != "" {
		e, err := trust.Parse(req.Text)
		if err != nil {
			writeErrors(w, []FieldError{{"trust_conditions", err.Error()}})
			return
		}
		for _, c := range e.Conditions {
			v := c.Values
			if v == nil {
				v = []string{}
			}
			rows = append(rows, Row{c.Claim, c.Op, v})
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"conditions": rows})
}

// renderConditions turns builder rows into the text form (the trust
// language's renderer), and checks it parses back.
func (h *Handler) renderConditions(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Conditions []Row `json:"conditions"`
	}
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeErrors(w, []FieldError{{"", `the body must be {"conditions": [{"claim", "op", "values"}]}`}})
		return
	}
	var errs []FieldError
	parts := make([]string, 0, len(req.Conditions))
	for i, row := range req.Conditions {
		f := "conditions[" + itoa(i) + "]"
		known := false
		for _, op := range Operators {
			known = known || op == row.Op
		}
		switch {
		case strings.TrimSpace(row.Claim) == "":
			errs = append(errs, FieldError{f + ".claim", "choose or type a claim"})
			continue
		case !known:
			errs = append(errs, FieldError{f + ".op", "unknown operator " + string(row.Op)})
			continue
		case row.Op != trust.OpExists && len(row.Values) == 0:
			errs = append(errs, FieldError{f + ".values", "give a value"})
			continue
		}
		vals := row.Values
		if row.Op == trust.OpExists {
			vals = nil
		} else if row.Op != trust.OpOneOf && row.Op != trust.OpNotOneOf {
			vals = vals[:1]
		}
		parts = append(parts, trust.Condition{Claim: row.Claim, Op: row.Op, Values: vals}.String())
	}
	if len(errs) > 0 {
		writeErrors(w, errs)
		return
	}
	text := strings.Join(parts, " and ")
	if text != "" {
		if _, err := trust.Parse(text); err != nil {
			writeErrors(w, []FieldError{{"trust_conditions", err.Error()}})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"text": text})
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}
