# Buddy's scope hierarchy, evaluated over data.sidecar.scopes.implies: direct
# edges such as EXECUTION_MANAGE -> [EXECUTION_RUN], with every known scope
# as a key (leaves map to []): graph.reachable only follows keys, so the
# bundle loader rejects a graph that names a scope it has no key for.
# See docs/providers.md for each implication and where it comes from.
package sidecar.scope

# closure(have) is the set of every scope that the scopes in have grant,
# themselves included, following the hierarchy transitively.
closure(have) := graph.reachable(data.sidecar.scopes.implies, have) | {s | some s in have}

# covers(have, need) holds when the scopes in have grant need.
covers(have, need) if need in closure(have)

# missing(have, need) is the set of scopes in need that have does not grant.
missing(have, need) := {s |
	some s in need
	not covers(have, s)
}
