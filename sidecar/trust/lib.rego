# Helper functions for the generated trust-condition modules
# (data.sidecar.conditions[<provider id>]).
#
# This file is embedded in oidc-sidecar (sidecar/trust/lib.rego) and shipped
# in every bundle as sidecar/trust/lib.rego. Edit it there, not in a bundle.
#
# Every function takes the claims object first (input.claims) and the claim
# name second, and holds (is true) or is undefined; none of them can raise a
# runtime error, whatever the claims hold.
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
# `pattern`.
matches(claims, name, pattern) if glob.match(pattern, ["/"], text(claims[name]))

matches(claims, name, pattern) if {
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
