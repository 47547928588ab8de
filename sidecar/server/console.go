package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"os"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/admin"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/policy"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/provider"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/routes"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/scope"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/token"
)

// newDecisions keeps the recent exchange decisions: a capped stream per
// provider in Redis (every replica's), else a ring in this process.
func (s *Server) newDecisions() admin.Decisions {
	if rs, ok := s.store.(*token.RedisStore); ok && s.cfg.Redis != nil {
		prefix := s.cfg.Redis.KeyPrefix
		if prefix == "" {
			prefix = token.DefaultKeyPrefix
		}
		return admin.NewRedisDecisions(s.bg, rs.Client(), prefix)
	}
	return admin.NewRing()
}

// tapAudit makes the audit logger also feed the recent decisions.
func tapAudit(audit *slog.Logger, ds admin.Decisions) *slog.Logger {
	replica, _ := os.Hostname()
	return slog.New(admin.Tap(audit.Handler(), ds, replica))
}

// newAdmin builds the admin API and console (sidecar/admin).
func (s *Server) newAdmin(ds admin.Decisions) *admin.Handler {
	o := admin.Options{
		Engine:     s.engine,
		Authorized: s.adminAuthorized,
		Decisions:  ds,
		// Bulk revocation (replicas.go): every replica, through the hub.
		RevokeTokens: s.revokeProviderTokens,
		Reload: func(ctx context.Context) error {
			_, err := s.reload(ctx)
			return err
		},
	}
	if s.adminDigest != nil {
		o.Credential = func(c string) bool {
			d := sha256.Sum256([]byte(c))
			return subtle.ConstantTimeCompare(d[:], s.adminDigest) == 1
		}
	}
	if fs, ok := s.source.(*filesSource); ok {
		o.ProvidersPath = fs.providers
		o.Check = fs.check
	} else {
		o.ReadOnly = "the policy comes from " + s.source.Describe() + ", not from a providers file: edit the providers file the bundle is built from (on the replica that builds it)"
	}
	return admin.New(o)
}

// check builds and compiles the bundle the files would give with pf as the
// providers file: what the next Load would serve.
func (s *filesSource) check(ctx context.Context, pf *provider.File) error {
	var pols []policy.File
	var err error
	if len(s.policies) > 0 {
		if pols, err = policy.LoadPolicies(s.policies, false); err != nil {
			return err
		}
	}
	var rts []routes.Route
	if s.routes != "" {
		if rts, err = routes.Load(s.routes, scope.Known); err != nil {
			return err
		}
	}
	b, err := policy.Build(ctx, policy.Sources{Providers: pf.Providers, Policies: pols, Routes: rts, Settings: s.settings})
	if err != nil {
		return err
	}
	_, err = policy.Compile(ctx, b)
	return err
}
