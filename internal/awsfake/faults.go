package awsfake

import (
	"context"
	"net/http"
	"strings"
	"time"

	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
)

// Faults configures the faults injected into one account's calls. Each rule
// names the operations it applies to with a pattern "service:Operation"
// (service in lower case: sts, iam, kms, s3), where "*" and "?" are
// wildcards: "s3:PutBucketPolicy", "kms:*", "*". Rules added later are
// checked first. The faults of an account apply to every client acting in
// it (the account's own clients and role sessions in it).
type Faults struct {
	c       *Cloud
	account string
}

// accountFaults is the fault state of one account.
type accountFaults struct {
	latency       []latencyRule
	rules         []*faultRule
	roleInvisible time.Duration
	// failReplications counts the replications still to fail (FailReplication).
	failReplications int
}

type latencyRule struct {
	ops           string
	fixed, jitter time.Duration
}

// faultKind is what a faultRule does to a call.
type faultKind int

const (
	faultThrottle faultKind = iota
	faultServer
	faultLose
)

// faultRule fires for the next n matching calls (n > 0), or at random
// with probability rate (n == 0).
type faultRule struct {
	kind faultKind
	ops  string
	n    int
	rate float64
}

// Faults returns the fault configuration of account.
func (c *Cloud) Faults(account string) *Faults { return &Faults{c: c, account: account} }

func (f *Faults) state() *accountFaults {
	s, ok := f.c.faults[f.account]
	if !ok {
		s = &accountFaults{}
		f.c.faults[f.account] = s
	}
	return s
}

func (f *Faults) add(r *faultRule) *Faults {
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	s := f.state()
	s.rules = append(s.rules, r)
	return f
}

// Latency makes every call matching ops take fixed plus a uniformly random
// part of jitter longer (it waits, honouring the context, before the call
// is applied). Latencies of several matching rules add up.
func (f *Faults) Latency(ops string, fixed, jitter time.Duration) *Faults {
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	s := f.state()
	s.latency = append(s.latency, latencyRule{ops: ops, fixed: fixed, jitter: jitter})
	return f
}

// Throttle makes the next n calls matching ops fail, unapplied, with the
// service's throttling error: S3 503 SlowDown, KMS ThrottlingException,
// IAM and STS Throttling ("Rate exceeded").
func (f *Faults) Throttle(ops string, n int) *Faults {
	return f.add(&faultRule{kind: faultThrottle, ops: ops, n: n})
}

// ThrottleRate makes each call matching ops fail with the throttling error
// of Throttle with probability rate (0..1).
func (f *Faults) ThrottleRate(ops string, rate float64) *Faults {
	return f.add(&faultRule{kind: faultThrottle, ops: ops, rate: rate})
}

// Fail5xx makes the next n calls matching ops fail, unapplied, with the
// service's 500 error: S3 InternalError, KMS KMSInternalException, IAM
// ServiceFailure, STS InternalFailure.
func (f *Faults) Fail5xx(ops string, n int) *Faults {
	return f.add(&faultRule{kind: faultServer, ops: ops, n: n})
}

// Fail5xxRate makes each call matching ops fail with the error of Fail5xx
// with probability rate (0..1).
func (f *Faults) Fail5xxRate(ops string, rate float64) *Faults {
	return f.add(&faultRule{kind: faultServer, ops: ops, rate: rate})
}

// LoseResponse makes the next n calls matching ops take effect (or fail)
// as usual and then return ErrResponseLost instead of their answer.
func (f *Faults) LoseResponse(ops string, n int) *Faults {
	return f.add(&faultRule{kind: faultLose, ops: ops, n: n})
}

// RoleInvisibleFor makes roles created in this account from now on
// invisible to S3 and KMS for d after their creation, as IAM's eventual
// consistency does on AWS (IAM User Guide, "Troubleshooting IAM": "changes
// ... can take time to become visible"). While a role is invisible,
// PutKeyPolicy and PutBucketPolicy naming it answer with the
// invalid-principal error, and replication through it fails. IAM itself
// sees the role at once.
func (f *Faults) RoleInvisibleFor(d time.Duration) *Faults {
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	f.state().roleInvisible = d
	return f
}

// FailReplication makes the next n replications of objects from buckets of
// this account fail (status FAILED), whatever the documents allow, as S3
// fails objects written before a change to the role's permissions, the
// destination's policies or the keys' policies has propagated: S3 checks
// none of them when the rule is put, and never retries an object that
// failed (S3 User Guide, "Troubleshooting replication").
func (f *Faults) FailReplication(n int) *Faults {
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	f.state().failReplications += n
	return f
}

// takeReplicationFailureLocked reports whether a replication from a bucket
// of account must fail (FailReplication), consuming one.
func (c *Cloud) takeReplicationFailureLocked(account string) bool {
	s, ok := c.faults[account]
	if !ok || s.failReplications <= 0 {
		return false
	}
	s.failReplications--
	return true
}

// Reset removes every fault of the account. Roles already created keep
// the visibility time they were created with.
func (f *Faults) Reset() {
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	delete(f.c.faults, f.account)
}

// opMatches reports whether pattern selects service:op.
func opMatches(pattern, service, op string) bool {
	return wildcardMatch(strings.ToLower(pattern), strings.ToLower(service)+":"+strings.ToLower(op))
}

// before applies latency, throttling and server faults to a call about to
// be made in account. A non-nil error means the call must not be applied.
func (c *Cloud) before(ctx context.Context, acct, service, op string) error {
	c.mu.Lock()
	var wait time.Duration
	var fire *faultRule
	if s, ok := c.faults[acct]; ok {
		for _, l := range s.latency {
			if opMatches(l.ops, service, op) {
				wait += l.fixed
				if l.jitter > 0 {
					wait += time.Duration(c.rng.Int64N(int64(l.jitter)))
				}
			}
		}
		fire = c.takeRuleLocked(s, service, op, faultThrottle, faultServer)
	}
	c.mu.Unlock()
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if fire == nil {
		return nil
	}
	if fire.kind == faultThrottle {
		return throttleErr(service)
	}
	return serverErr(service)
}

// takeLoss reports whether the response of a call just applied in account
// must be lost.
func (c *Cloud) takeLoss(acct, service, op string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.faults[acct]
	return ok && c.takeRuleLocked(s, service, op, faultLose) != nil
}

// takeRuleLocked finds the newest rule of one of kinds that fires for this
// call, consuming one of its n calls.
func (c *Cloud) takeRuleLocked(s *accountFaults, service, op string, kinds ...faultKind) *faultRule {
	for i := len(s.rules) - 1; i >= 0; i-- {
		r := s.rules[i]
		if !containsKind(kinds, r.kind) || !opMatches(r.ops, service, op) {
			continue
		}
		if r.n > 0 {
			r.n--
			if r.n == 0 {
				s.rules = append(s.rules[:i], s.rules[i+1:]...)
			}
			return r
		}
		if r.rate > 0 && c.rng.Float64() < r.rate {
			return r
		}
	}
	return nil
}

func containsKind(kinds []faultKind, k faultKind) bool {
	for _, x := range kinds {
		if x == k {
			return true
		}
	}
	return false
}

func throttleErr(service string) error {
	switch service {
	case svcS3:
		return newErr(http.StatusServiceUnavailable, "SlowDown", "Please reduce your request rate.")
	case svcKMS:
		return newErr(http.StatusBadRequest, "ThrottlingException", "Rate exceeded")
	default:
		return newErr(http.StatusBadRequest, "Throttling", "Rate exceeded")
	}
}

func serverErr(service string) error {
	msg := "We encountered an internal error. Please try again."
	switch service {
	case svcS3:
		return newErr(http.StatusInternalServerError, "InternalError", "%s", msg)
	case svcKMS:
		return typed(http.StatusInternalServerError, &kmstypes.KMSInternalException{Message: &msg})
	case svcIAM:
		return typed(http.StatusInternalServerError, &iamtypes.ServiceFailureException{Message: &msg})
	default:
		return newErr(http.StatusInternalServerError, "InternalFailure", "%s", msg)
	}
}
