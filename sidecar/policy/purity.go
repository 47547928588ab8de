package policy

import (
	"fmt"
	"slices"

	"github.com/open-policy-agent/opa/v1/ast"
)

// ProxyDecisionPure reports whether the proxy decision depends only on
// method, path, route, variables, token and client address, and on this
// snapshot: no rule it can reach reads input.time (or the whole input) or
// calls a non-deterministic builtin (time.now_ns, rand.intn, ...). A
// caller may then reuse a decision for the same inputs; when it is false,
// why says which rule stops it.
func (s *Snapshot) ProxyDecisionPure() (pure bool, why string) {
	return s.proxyPure, s.proxyImpure
}

// pureOfTime walks every rule and function the rules at ref depend on,
// transitively, and reports whether none reads input.time, reads input as
// a whole or with a computed key, or calls a non-deterministic builtin.
func pureOfTime(c *ast.Compiler, ref ast.Ref) (bool, string) {
	seen := map[*ast.Rule]bool{}
	stack := slices.Clone(c.GetRulesExact(ref))
	for len(stack) > 0 {
		r := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[r] {
			continue
		}
		seen[r] = true
		where := fmt.Sprintf("%s (%s)", r.Path(), r.Location)
		why := ""
		ast.WalkRefs(r, func(x ast.Ref) bool {
			if why != "" || !x[0].Equal(ast.InputRootDocument) {
				return false
			}
			switch {
			case len(x) == 1:
				why = "uses input as a whole"
			case !x[1].IsGround():
				why = "reads input with a computed key"
			case x[1].Equal(ast.StringTerm("time")):
				why = "reads input.time"
			}
			return false
		})
		ast.WalkExprs(r, func(e *ast.Expr) bool {
			if why == "" && e.IsCall() {
				if b, ok := ast.BuiltinMap[e.Operator().String()]; ok && b.Nondeterministic {
					why = "calls " + b.Name + ", which is not deterministic"
				}
			}
			return false
		})
		if why != "" {
			return false, where + " " + why
		}
		for x := r; x != nil; x = x.Else {
			for dep := range c.Graph.Dependencies(x) {
				if d, ok := dep.(*ast.Rule); ok {
					stack = append(stack, d)
				}
			}
		}
		if r.Else != nil {
			stack = append(stack, r.Else)
		}
	}
	return true, ""
}
