# Helper functions for the generated trust-condition modules
# (data.sidecar.conditions[<provider id>]).
#
# This file is embedded in oidc-sidecar (sidecar/trust/lib.rego) and shipped
# in every bundle as sidecar/trust/lib.rego. Edit it there, not in a bundle.
#
# A generated module holds its provider's clauses as a table of rows
# [claim, operator, expected, text] in one rule, `conditions`. The exchange
# entry point (policies/exchange.rego) evaluates the table of the provider
# being exchanged with
#
#   trust.allow(data.sidecar.conditions[id].conditions)
#   trust.deny(data.sidecar.conditions[id].conditions)
#
# allow and deny read the claims from input.claims. The functions below
# them take the claims object first and the claim name second, so that
# hand-written modules can call them too, e.g.
# trust.is(input.claims, "repository_owner", "octo-org"). They hold (are
# true) or are undefined, and none of them raises a runtime error, whatever
# the claims hold.
#
# Rules of comparison:
#   - A claim is missing when it is absent or null. A missing claim
#     satisfies no condition, negative ones included.
#   - Literals are strings. A claim value equals a literal when it is that
#     string; when it is a boolean whose JSON text is the literal (true and
#     "true"); or when it is a number equal in value to the literal read as
#     a JSON number (42 and "42", 42 and "42.0").
#   - An array claim equals a literal when one of its elements does.
#   - Objects, nested arrays and null never equal or match a literal.
#   - Glob patterns use glob.match with "/" as the separator: "*" and "?"
#     do not cross "/", "**" does.
package sidecar.trust

# allow(conditions): true when every condition row holds for input.claims;
# false (never undefined) otherwise. It states the conditions themselves and
# does not depend on deny.
allow(conditions) if {
	# The common case first, without a function call per row: every row is
	# an "is" that the claim meets as a plain string. It is a special case of
	# holds (its first definition), so it can only allow what holds allows.
	claims := input.claims
	every row in conditions {
		row[1] == "is"
		claims[row[0]] == row[2]
	}
} else if {
	claims := input.claims
	every row in conditions {
		holds(claims, row)
	}
} else := false

# deny(conditions): a set with one denial reason (see reason) for each
# condition row that does not hold for input.claims, with "clause": the
# row's position in the table, from 1 (the sidecar lists failed conditions
# in that order, the order they were written in).
deny(conditions) := {object.union(reason(claims, text, name, op, expected), {"clause": i + 1}) |
	claims := input_claims
	some i, row in conditions
	not holds(claims, row)
	[name, op, expected, text] := row
}

# input_claims is input.claims; an empty object (every claim missing) when
# the input has no claims object, so that deny still explains.
input_claims := input.claims if {
	is_object(input.claims)
} else := {}

# holds(claims, [claim, operator, expected, text]): the condition row holds.
# An unknown operator never holds. OPA indexes the operator, so only its
# definitions run. The "is" and "is one of" cases are spelled out here
# (string claim first) because they are by far the most common.
holds(claims, [name, "is", want, _]) if claims[name] == want

holds(claims, [name, "is", want, _]) if {
	value := claims[name]
	not is_string(value)
	equals(value, want)
}

holds(claims, [name, "is not", want, _]) if is_not(claims, name, want)

holds(claims, [name, "is one of", wants, _]) if claims[name] in wants

holds(claims, [name, "is one of", wants, _]) if {
	value := claims[name]
	not is_string(value)
	some want in wants
	equals(value, want)
}

holds(claims, [name, "is not one of", wants, _]) if not_one_of(claims, name, wants)

holds(claims, [name, "matches", pattern, _]) if matches(claims, name, pattern)

holds(claims, [name, "does not match", pattern, _]) if not_matches(claims, name, pattern)

holds(claims, [name, "exists", _, _]) if exists(claims, name)

# is(claims, name, want): claim `name` equals `want`, or, for an array
# claim, contains an element that does.
is(claims, name, want) if claims[name] == want # the common case first

is(claims, name, want) if {
	value := claims[name]
	not is_string(value)
	equals(value, want)
}

# is_not(claims, name, want): claim `name` is present and is(...) is false.
is_not(claims, name, want) if {
	exists(claims, name)
	not is(claims, name, want)
}

# one_of(claims, name, wants): is(claims, name, want) for some want in the
# array `wants`.
one_of(claims, name, wants) if claims[name] in wants # the common case first

one_of(claims, name, wants) if {
	value := claims[name]
	not is_string(value)
	some want in wants
	equals(value, want)
}

# not_one_of(claims, name, wants): claim `name` is present and one_of(...)
# is false.
not_one_of(claims, name, wants) if {
	exists(claims, name)
	not one_of(claims, name, wants)
}

# matches(claims, name, pattern): claim `name` (a string, or the JSON text of
# a boolean or number), or an element of an array claim, matches the glob
# `pattern` (a valid glob; the generator checks it).
matches(claims, name, pattern) if {
	is_string(pattern)
	glob.match(pattern, ["/"], text(claims[name]))
}

matches(claims, name, pattern) if {
	is_string(pattern)
	value := claims[name]
	is_array(value)
	some element in value
	glob.match(pattern, ["/"], text(element))
}

# not_matches(claims, name, pattern): claim `name` is present and
# matches(...) is false.
not_matches(claims, name, pattern) if {
	exists(claims, name)
	not matches(claims, name, pattern)
}

# exists(claims, name): claim `name` is present and not null.
exists(claims, name) if claims[name] != null

# equals(value, want): the claim value (not a string) equals the literal.
equals(value, want) if scalar_equals(value, want)

equals(value, want) if {
	is_array(value)
	some element in value
	scalar_equals(element, want)
}

# scalar_equals(x, want): the string, boolean or number x equals the literal.
scalar_equals(x, want) if x == want

scalar_equals(x, want) if {
	is_boolean(x)
	json.marshal(x) == want
}

scalar_equals(x, want) if {
	is_number(x)
	is_string(want)
	regex.match(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`, want)
	to_number(want) == x
}

# text(x): the text a scalar claim value is matched as: a string is itself,
# a boolean or number is its JSON text. Undefined for anything else.
text(x) := x if is_string(x)

text(x) := json.marshal(x) if is_boolean(x)

text(x) := json.marshal(x) if is_number(x)

# reason(claims, condition, name, op, expected): the denial reason for a
# failed condition. `condition` is the condition's text, `op` its operator,
# `expected` the literal (a string), the literals (an array, for the "one
# of" operators) or null (for exists).
reason(claims, condition, name, op, expected) := {
	"code": "condition_failed",
	"condition": condition,
	"claim": name,
	"operator": op,
	"expected": expected,
	"actual": actual,
	"missing": actual == null,
	"message": message(condition, actual),
} if {
	actual := value_or_null(claims, name)
}

# value_or_null(claims, name): the claim's value, or null when it is absent.
value_or_null(claims, name) := value if {
	value := claims[name]
} else := null

# message(condition, actual): the human-readable form of a denial reason.
message(condition, null) := concat("", [condition, " (claim missing)"])

message(condition, actual) := concat("", [condition, " (actual: ", json.marshal(actual), ")"]) if actual != null
