package awsfake

import (
	"cmp"
	"context"
	"math/rand/v2"
	"sync"
	"time"

	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// DefaultReplicationDelay is how long the fake waits, by default, between
// accepting an object and deciding its replication. Real S3 replicates most
// objects within 15 minutes (S3 User Guide, "Troubleshooting replication");
// the fake is quick so that tests and dev mode stay fast.
const DefaultReplicationDelay = 20 * time.Millisecond

// Config tunes a Cloud. The zero value is usable.
type Config struct {
	// ReplicationDelay is the time between a PutObject that a replication
	// rule selects and its replication (PENDING until then). Zero means
	// DefaultReplicationDelay; a negative value means no delay (the
	// replication still runs asynchronously).
	ReplicationDelay time.Duration
	// NowFunc is the clock used for role visibility, credential expiry and
	// timestamps. Nil means time.Now.
	NowFunc func() time.Time
	// Seed seeds the random source of rate-based and jittered faults, so a
	// test run can be reproduced. Zero means 1.
	Seed uint64
	// SaveFunc, when set, keeps the world somewhere that outlives the
	// process: it is called with the world's Snapshot as JSON after calls
	// that change it, and no call answers before SaveFunc has stored a
	// snapshot holding everything that call saw or did (see Flush). Nil
	// means the world lives only in memory.
	SaveFunc func(ctx context.Context, snapshot []byte) error
}

// Cloud is a whole fake AWS: accounts with their roles and keys, and the
// global namespace of S3 buckets. All methods are safe for concurrent use.
type Cloud struct {
	cfg Config

	mu sync.Mutex
	// pcg is rng's source, kept for its state, which a Snapshot holds so
	// that a restored world does not hand out version IDs again.
	pcg      *rand.PCG
	rng      *rand.Rand
	accounts map[string]*account
	buckets  map[string]*bucket
	keys     map[string]*key // by key ARN
	sessions map[string]session
	failures map[objectRef]string
	// pending holds the replications scheduled and not yet decided.
	pending map[objectRef]pendingReplication
	faults  map[string]*accountFaults
	// idSeq numbers the IAM entities created, for their unique IDs.
	idSeq uint64
	// gen counts the changes of the world; saver stores them.
	gen   uint64
	saver *saver
}

// account is one AWS account's IAM.
type account struct {
	id       string
	roles    map[string]*role          // by role name
	policies map[string]*managedPolicy // customer-managed policies, by ARN
}

// session is what a set of temporary credentials stands for.
type session struct {
	caller  principal
	expires time.Time
}

// objectRef names one object version, for replication bookkeeping.
type objectRef struct{ bucket, key, versionID string }

// pendingReplication is a replication scheduled for an object version: the
// role and the rule of the configuration in place when the object was put.
type pendingReplication struct {
	role string
	rule *s3types.ReplicationRule
}

// New returns an empty Cloud with the default Config.
func New() *Cloud { return NewWithConfig(Config{}) }

// NewWithConfig returns an empty Cloud tuned by cfg.
func NewWithConfig(cfg Config) *Cloud {
	cfg.ReplicationDelay = cmp.Or(cfg.ReplicationDelay, DefaultReplicationDelay)
	if cfg.NowFunc == nil {
		cfg.NowFunc = time.Now
	}
	cfg.Seed = cmp.Or(cfg.Seed, 1)
	pcg := rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)
	c := &Cloud{
		cfg:      cfg,
		pcg:      pcg,
		rng:      rand.New(pcg),
		accounts: map[string]*account{},
		buckets:  map[string]*bucket{},
		keys:     map[string]*key{},
		sessions: map[string]session{},
		failures: map[objectRef]string{},
		pending:  map[objectRef]pendingReplication{},
		faults:   map[string]*accountFaults{},
	}
	if cfg.SaveFunc != nil {
		c.saver = &saver{save: cfg.SaveFunc}
	}
	return c
}

func (c *Cloud) now() time.Time { return c.cfg.NowFunc() }

// accountLocked returns the account with this ID, creating it on first use:
// every 12-digit ID names an account, as far as the fake is concerned.
func (c *Cloud) accountLocked(id string) *account {
	a, ok := c.accounts[id]
	if !ok {
		a = &account{id: id, roles: map[string]*role{}, policies: map[string]*managedPolicy{}}
		c.accounts[id] = a
	}
	return a
}

// do runs one API call as caller: it applies the faults configured for the
// caller's account and this operation, runs fn under the Cloud's lock, and
// wraps any error the way the SDK does. With a SaveFunc it answers only
// once the world as the call left it (or found it) is saved.
func do[T any](ctx context.Context, c *Cloud, caller principal, service, op string, fn func() (*T, error)) (*T, error) {
	if err := c.before(ctx, caller.account, service, op); err != nil {
		return nil, wrapErr(service, op, err)
	}
	c.mu.Lock()
	out, err := fn()
	if changes(op) {
		c.gen++
	}
	seen := c.gen
	c.mu.Unlock()
	if serr := c.waitSaved(ctx, seen); serr != nil {
		return nil, wrapErr(service, op, serr)
	}
	if c.takeLoss(caller.account, service, op) {
		return nil, wrapErr(service, op, ErrResponseLost)
	}
	if err != nil {
		return nil, wrapErr(service, op, err)
	}
	return out, nil
}

// ReplicationFailure returns why replication of the given object version
// FAILED, or "" when it did not fail (or was never attempted).
func (c *Cloud) ReplicationFailure(bucket, key, versionID string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.failures[objectRef{bucket, key, versionID}]
}

// ReplicationStatus returns the replication status of an object version as
// HeadObject would report it, without going through a client (and its
// faults). It is "" when the object does not exist or is not replicated.
func (c *Cloud) ReplicationStatus(bucket, key, versionID string) s3types.ReplicationStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.buckets[bucket]
	if !ok {
		return ""
	}
	o := b.version(key, versionID)
	if o == nil {
		return ""
	}
	return o.replication
}
