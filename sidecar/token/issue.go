package token

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Issuance is everything one allowed token exchange writes: its rate-limit
// counters, its replay-guard claim and the token's record. Stores that
// implement Issuer apply it in one step (Redis: one script, one round
// trip, on a single server or a Sentinel-managed primary); Issue falls
// back to Allow, ClaimOnce and Save for the others, with the same
// outcomes.
type Issuance struct {
	// Limits are all counted first, as by Allow. If any is exhausted,
	// nothing else is written.
	Limits []Limit
	// ClaimKey, ClaimOwner and ClaimTTL are the replay guard, as for
	// ClaimOnce. An empty ClaimKey claims nothing (allow_token_reuse).
	ClaimKey, ClaimOwner string
	ClaimTTL             time.Duration
	// Hash, Record and TTL are the token, as for Save.
	Hash   string
	Record *Record
	TTL    time.Duration
	// EpochKey, when set, is the full Redis key of the hash whose field
	// Record.ProviderID holds the provider's revocation epoch
	// (sidecar/revocation). A Redis store reads it in the same atomic step
	// as the save and stamps Record.Epoch with it, so no bulk revocation
	// can fall between the read and the write. Only Redis stores read it;
	// with other stores the caller sets Record.Epoch itself.
	EpochKey string
}

// IssueResult is the outcome of an Issuance that reached the store.
type IssueResult struct {
	// Limits holds one result per Issuance.Limits, in order.
	Limits []LimitResult
	// Limited: a limit is exhausted; nothing was claimed or saved.
	Limited bool
	// Replayed: another owner holds the claim; nothing was saved.
	Replayed bool
}

// Saved reports whether the record was stored.
func (r IssueResult) Saved() bool { return !r.Limited && !r.Replayed }

// Issuer is implemented by stores that apply an Issuance in one step.
//
// Error contract: as for ClaimOnce, an error means the outcome is unknown
// (the claim and even the record may have been written). The caller fails
// closed and releases the claim with Unclaim(ClaimKey, ClaimOwner); the
// record, if written, belongs to a token nobody was given.
type Issuer interface {
	Issue(ctx context.Context, iss Issuance) (IssueResult, error)
}

// Issue applies iss to s: in one step when s implements Issuer, otherwise
// as Allow, then ClaimOnce, then Save (the caller then sets
// Record.Epoch itself). On success Record.Epoch holds the epoch the record
// was stored with.
func Issue(ctx context.Context, s Store, iss Issuance) (IssueResult, error) {
	if is, ok := s.(Issuer); ok {
		return is.Issue(ctx, iss)
	}
	return issueSteps(ctx, s, iss)
}

// issueSteps is Issue for stores without a one-step implementation.
func issueSteps(ctx context.Context, s Store, iss Issuance) (IssueResult, error) {
	if err := checkIssuance(iss); err != nil {
		return IssueResult{}, err
	}
	var res IssueResult
	if len(iss.Limits) > 0 {
		lr, err := s.Allow(ctx, iss.Limits...)
		if err != nil {
			return res, err
		}
		if len(lr) != len(iss.Limits) {
			return res, fmt.Errorf("%w: the store returned %d rate-limit results for %d limits", ErrUnavailable, len(lr), len(iss.Limits))
		}
		res.Limits = lr
		res.Limited = anyLimited(lr)
		if res.Limited {
			return res, nil
		}
	}
	if iss.ClaimKey != "" {
		first, err := s.ClaimOnce(ctx, iss.ClaimKey, iss.ClaimOwner, iss.ClaimTTL)
		if err != nil {
			return res, err
		}
		if !first {
			res.Replayed = true
			return res, nil
		}
	}
	return res, s.Save(ctx, iss.Hash, iss.Record, iss.TTL)
}

func anyLimited(lr []LimitResult) bool {
	for _, r := range lr {
		if !r.Allowed {
			return true
		}
	}
	return false
}

func checkIssuance(iss Issuance) error {
	if err := checkLimits(iss.Limits); err != nil {
		return err
	}
	if iss.ClaimKey != "" {
		if err := checkKey("Issue (claim)", iss.ClaimKey); err != nil {
			return err
		}
		if err := checkOwner("Issue (claim)", iss.ClaimOwner); err != nil {
			return err
		}
		if err := checkTTL("Issue (claim)", iss.ClaimTTL); err != nil {
			return err
		}
	}
	if iss.EpochKey != "" && iss.Record != nil && iss.Record.Epoch != 0 {
		return errors.New("token: Issue: Record.Epoch is set and EpochKey asks the store to stamp it: use one")
	}
	return checkSave(iss.Hash, iss.Record, iss.TTL)
}

// encodeRecord encodes rec as stored. With Issuance.EpochKey the record
// has no epoch field yet (checkIssuance) and the JSON object ends in '}',
// so the Redis script can append one.
func encodeRecord(rec *Record) ([]byte, error) {
	return appendRecord(nil, rec), nil
}
