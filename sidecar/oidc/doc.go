// Package oidc verifies the OIDC ID tokens CI systems issue (GitHub Actions,
// CircleCI, any OpenID Provider) against the keys their configured issuer
// publishes.
//
// # Where keys come from
//
// Keys come only from the configured issuer (Expect.Issuer, which must come
// from configuration): its discovery document
// <issuer>/.well-known/openid-configuration, whose "issuer" must equal the
// configured issuer byte for byte and whose "jwks_uri" must be https (or http
// on a loopback host), and then that JWKS. Nothing the token names is ever
// fetched or trusted: a token whose header carries jku, x5u, jwk, x5c, crit or
// b64 is rejected (forbidden_header), and the token's own iss is only compared,
// never used to find keys. Issuer URLs must be https, or http on a loopback
// host (for tests and the demo).
//
// JWKs whose "use" is present and not "sig", keys that are neither RSA
// (≥ 2048 bits) nor EC P-256/P-384/P-521, and private keys are skipped. A JWK
// without "alg" is usable with every allowed algorithm of its family (RSA:
// RS*, PS*; P-256: ES256; P-384: ES384; P-521: ES512); a JWK with "alg" only
// with that algorithm.
//
// # Key cache
//
// Each issuer has one cache entry. The first Verify (or Warm) fetches the
// discovery document and the JWKS synchronously; concurrent first calls share
// one fetch. Keys older than Options.RefreshInterval are refreshed in the
// background while the old ones keep serving; a failed refresh keeps the last
// good keys. A kid that is not in the set triggers one shared refetch; for
// Options.RefreshCooldown after it, unknown kids fail at once with no HTTP
// request (so random kids cannot make the sidecar hammer the issuer). When an
// issuer has no keys at all and its fetch fails, Verify returns
// issuer_unavailable (Temporary) and does not retry for min(RefreshCooldown,
// 5s).
//
// # Verification
//
// Verify rejects tokens over Options.MaxTokenBytes before parsing, requires a
// canonical compact JWS (strict base64url, three parts), decodes the header
// with the strict decoder below, checks alg against the allow-list (never
// "none" or HS*), picks the key by kid (a token without kid is accepted only
// when the issuer publishes exactly one key), and verifies the signature with
// jwx's jws.Verify and a key provider that supplies exactly that key and alg.
//
// Only then is the payload decoded, with a strict single-pass decoder: it must
// be a JSON object, duplicate member names are rejected at any depth, nesting
// is limited to 32 levels, strings must be valid UTF-8, and numbers stay
// json.Number. Then:
//
//   - iss must be present and equal Expect.Issuer exactly (a trailing slash
//     or a look-alike Unicode letter is a mismatch);
//   - exp and iat are required NumericDates, nbf is honoured if present, and
//     Options.Leeway applies to all three;
//   - Expect.MaxAge, if set, bounds now - iat (plus leeway);
//   - if Expect.Audience is set, aud (a string or an array of strings) must
//     contain it. A token whose aud array holds the expected value among
//     others is ACCEPTED: that is the "aud contains" rule of OpenID Connect
//     Core §3.1.3.7 and what GitHub does with custom audiences. Policies that
//     want a single audience can check the aud claim themselves.
//
// Every failure is an *Error with a stable Code (see the Code* constants) and
// a Message that says precisely what was wrong without echoing the token;
// quoted claim values are ASCII-escaped and truncated.
package oidc
