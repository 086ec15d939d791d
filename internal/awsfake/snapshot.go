package awsfake

import (
	"cmp"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"time"

	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// SnapshotFormat is the layout of Snapshot this package writes; Restore
// refuses any other.
const SnapshotFormat = 1

// Snapshot is the whole world of a Cloud as plain data: accounts with their
// roles and managed policies, keys, buckets with their objects and
// versions, and replications still pending or failed. It marshals to JSON
// deterministically (everything is sorted), so the same world always gives
// the same bytes.
//
// It leaves out what belongs to the process rather than to the world: the
// credentials AssumeRole handed out (their holders are gone with the
// process), the faults and the Config.
type Snapshot struct {
	// Format is SnapshotFormat.
	Format int `json:"format"`
	// Random is the state of the random source that makes version IDs, so
	// that a restored world goes on where it stopped instead of handing the
	// same IDs out again.
	Random []byte `json:"random"`
	// IDSeq numbers the IAM entities created, for their unique IDs.
	IDSeq    uint64            `json:"id_seq"`
	Accounts []AccountSnapshot `json:"accounts"`
	Keys     []KeySnapshot     `json:"keys"`
	Buckets  []BucketSnapshot  `json:"buckets"`
	// Pending are replications scheduled and not yet decided; Restore
	// schedules them again.
	Pending []PendingSnapshot `json:"pending"`
	// Failed are the reasons of FAILED replications (ReplicationFailure).
	Failed []FailureSnapshot `json:"failed"`
}

// AccountSnapshot is one account's IAM.
type AccountSnapshot struct {
	ID       string                  `json:"id"`
	Roles    []RoleSnapshot          `json:"roles"`
	Policies []ManagedPolicySnapshot `json:"policies"`
}

// RoleSnapshot is an IAM role.
type RoleSnapshot struct {
	Name        string `json:"name"`
	ARN         string `json:"arn"`
	Path        string `json:"path"`
	Description string `json:"description,omitempty"`
	// ID is the role's unique ID (AROA…).
	ID    string `json:"id"`
	Trust string `json:"trust"`
	// Created is when the role was created, VisibleAt when S3 and KMS
	// started to see it.
	Created    time.Time         `json:"created"`
	VisibleAt  time.Time         `json:"visible_at"`
	Tags       []iamtypes.Tag    `json:"tags,omitempty"`
	Inline     map[string]string `json:"inline,omitempty"`
	MaxSession int32             `json:"max_session"`
	// Managed are the ARNs of the attached managed policies, in the order
	// they were attached.
	Managed []string `json:"managed,omitempty"`
	// Boundary is the ARN of the permissions boundary, "" for none.
	Boundary string `json:"boundary,omitempty"`
}

// ManagedPolicySnapshot is a customer-managed IAM policy.
type ManagedPolicySnapshot struct {
	Name        string    `json:"name"`
	ARN         string    `json:"arn"`
	ID          string    `json:"id"`
	Path        string    `json:"path"`
	Description string    `json:"description,omitempty"`
	Created     time.Time `json:"created"`
	Updated     time.Time `json:"updated"`
	// Versions, oldest first.
	Versions       []PolicyVersionSnapshot `json:"versions"`
	DefaultVersion string                  `json:"default_version"`
	NextVersion    int                     `json:"next_version"`
}

// PolicyVersionSnapshot is one version of a managed policy.
type PolicyVersionSnapshot struct {
	ID       string    `json:"id"`
	Document string    `json:"document"`
	Created  time.Time `json:"created"`
}

// KeySnapshot is a KMS key.
type KeySnapshot struct {
	ID          string                  `json:"id"`
	ARN         string                  `json:"arn"`
	Account     string                  `json:"account"`
	Region      string                  `json:"region"`
	Description string                  `json:"description,omitempty"`
	Policy      string                  `json:"policy"`
	Enabled     bool                    `json:"enabled"`
	Manager     kmstypes.KeyManagerType `json:"manager"`
	Spec        kmstypes.KeySpec        `json:"spec"`
	Created     time.Time               `json:"created"`
	Aliases     []string                `json:"aliases,omitempty"`
}

// BucketSnapshot is an S3 bucket with its objects.
type BucketSnapshot struct {
	Name        string                                     `json:"name"`
	Owner       string                                     `json:"owner"`
	Region      string                                     `json:"region"`
	Created     time.Time                                  `json:"created"`
	Versioning  s3types.BucketVersioningStatus             `json:"versioning,omitempty"`
	Policy      string                                     `json:"policy,omitempty"`
	Replication *s3types.ReplicationConfiguration          `json:"replication,omitempty"`
	Encryption  *s3types.ServerSideEncryptionConfiguration `json:"encryption,omitempty"`
	Ownership   s3types.ObjectOwnership                    `json:"ownership,omitempty"`
	ObjectLock  bool                                       `json:"object_lock,omitempty"`
	LockDefault *s3types.DefaultRetention                  `json:"lock_default,omitempty"`
	// Objects are the versions and delete markers, by key, each key's
	// oldest first.
	Objects []ObjectSnapshot `json:"objects,omitempty"`
}

// ObjectSnapshot is one version of an S3 object, or a delete marker.
type ObjectSnapshot struct {
	Key          string                       `json:"key"`
	VersionID    string                       `json:"version_id"`
	Data         []byte                       `json:"data,omitempty"`
	ETag         string                       `json:"etag,omitempty"`
	Modified     time.Time                    `json:"modified"`
	DeleteMarker bool                         `json:"delete_marker,omitempty"`
	SSE          s3types.ServerSideEncryption `json:"sse,omitempty"`
	KMSKey       string                       `json:"kms_key,omitempty"`
	BucketKey    bool                         `json:"bucket_key,omitempty"`
	Replication  s3types.ReplicationStatus    `json:"replication,omitempty"`
	LockMode     s3types.ObjectLockMode       `json:"lock_mode,omitempty"`
	RetainUntil  time.Time                    `json:"retain_until,omitzero"`
	LegalHold    bool                         `json:"legal_hold,omitempty"`
}

// PendingSnapshot is a replication scheduled and not yet decided, with the
// role and rule it was scheduled with.
type PendingSnapshot struct {
	Bucket    string                   `json:"bucket"`
	Key       string                   `json:"key"`
	VersionID string                   `json:"version_id"`
	Role      string                   `json:"role"`
	Rule      *s3types.ReplicationRule `json:"rule"`
}

// FailureSnapshot is why the replication of an object version FAILED.
type FailureSnapshot struct {
	Bucket    string `json:"bucket"`
	Key       string `json:"key"`
	VersionID string `json:"version_id"`
	Reason    string `json:"reason"`
}

// Snapshot returns the whole world as it is now.
func (c *Cloud) Snapshot() *Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.snapshotLocked()
}

// snapshotLocked copies the world. Strings, object data and the stored SDK
// documents (replication, encryption and retention configurations) are
// shared, not copied: the fake replaces them whole and never changes them
// in place, so the snapshot may be marshalled after the lock is released.
func (c *Cloud) snapshotLocked() *Snapshot {
	random, err := c.pcg.MarshalBinary()
	if err != nil {
		panic(fmt.Sprintf("awsfake: marshal the random source: %v", err)) // PCG's never fails
	}
	s := &Snapshot{Format: SnapshotFormat, Random: random, IDSeq: c.idSeq,
		Accounts: []AccountSnapshot{}, Keys: []KeySnapshot{}, Buckets: []BucketSnapshot{},
		Pending: []PendingSnapshot{}, Failed: []FailureSnapshot{}}
	for _, id := range slices.Sorted(maps.Keys(c.accounts)) {
		a := c.accounts[id]
		as := AccountSnapshot{ID: id, Roles: []RoleSnapshot{}, Policies: []ManagedPolicySnapshot{}}
		for _, name := range slices.Sorted(maps.Keys(a.roles)) {
			r := a.roles[name]
			as.Roles = append(as.Roles, RoleSnapshot{Name: r.name, ARN: r.arn, Path: r.path, Description: r.description,
				ID: r.id, Trust: r.trust, Created: r.created, VisibleAt: r.visibleAt, Tags: slices.Clone(r.tags),
				Inline: maps.Clone(r.inline), MaxSession: r.maxSession, Managed: slices.Clone(r.managed), Boundary: r.boundary})
		}
		for _, arn := range slices.Sorted(maps.Keys(a.policies)) {
			p := a.policies[arn]
			ps := ManagedPolicySnapshot{Name: p.name, ARN: p.arn, ID: p.id, Path: p.path, Description: p.description,
				Created: p.created, Updated: p.updated, DefaultVersion: p.defaultVersion, NextVersion: p.nextVersion}
			for _, v := range p.versions {
				ps.Versions = append(ps.Versions, PolicyVersionSnapshot{ID: v.id, Document: v.document, Created: v.created})
			}
			as.Policies = append(as.Policies, ps)
		}
		s.Accounts = append(s.Accounts, as)
	}
	for _, arn := range slices.Sorted(maps.Keys(c.keys)) {
		k := c.keys[arn]
		s.Keys = append(s.Keys, KeySnapshot{ID: k.id, ARN: k.arn, Account: k.account, Region: k.region, Description: k.description,
			Policy: k.policy, Enabled: k.enabled, Manager: k.manager, Spec: k.spec, Created: k.created, Aliases: slices.Clone(k.aliases)})
	}
	for _, name := range slices.Sorted(maps.Keys(c.buckets)) {
		b := c.buckets[name]
		bs := BucketSnapshot{Name: b.name, Owner: b.owner, Region: b.region, Created: b.created, Versioning: b.versioning,
			Policy: b.policy, Replication: b.replication, Encryption: b.encryption, Ownership: b.ownership,
			ObjectLock: b.objectLock, LockDefault: b.lockDefault}
		for _, k := range slices.Sorted(maps.Keys(b.objects)) {
			for _, o := range b.objects[k] {
				bs.Objects = append(bs.Objects, ObjectSnapshot{Key: o.key, VersionID: o.versionID, Data: o.data, ETag: o.etag,
					Modified: o.modified, DeleteMarker: o.deleteMarker, SSE: o.sse, KMSKey: o.kmsKey, BucketKey: o.bucketKey,
					Replication: o.replication, LockMode: o.lockMode, RetainUntil: o.retainUntil, LegalHold: o.legalHold})
			}
		}
		s.Buckets = append(s.Buckets, bs)
	}
	for _, ref := range sortedRefs(c.pending) {
		p := c.pending[ref]
		s.Pending = append(s.Pending, PendingSnapshot{Bucket: ref.bucket, Key: ref.key, VersionID: ref.versionID, Role: p.role, Rule: p.rule})
	}
	for _, ref := range sortedRefs(c.failures) {
		s.Failed = append(s.Failed, FailureSnapshot{Bucket: ref.bucket, Key: ref.key, VersionID: ref.versionID, Reason: c.failures[ref]})
	}
	return s
}

func sortedRefs[V any](m map[objectRef]V) []objectRef {
	return slices.SortedFunc(maps.Keys(m), func(a, b objectRef) int {
		return cmp.Or(cmp.Compare(a.bucket, b.bucket), cmp.Compare(a.key, b.key), cmp.Compare(a.versionID, b.versionID))
	})
}

// Restore replaces the whole world with s, and schedules again the
// replications s holds as pending. Credentials handed out before are
// forgotten; the faults and the Config stay. With a SaveFunc, the restored
// world is saved by the next call or Flush.
func (c *Cloud) Restore(s *Snapshot) error {
	if s.Format != SnapshotFormat {
		return fmt.Errorf("awsfake: restore a snapshot of format %d: this version reads format %d only", s.Format, SnapshotFormat)
	}
	var pcg rand.PCG
	if err := pcg.UnmarshalBinary(s.Random); err != nil {
		return fmt.Errorf("awsfake: restore the random source: %w", err)
	}
	accounts := map[string]*account{}
	for _, as := range s.Accounts {
		a := &account{id: as.ID, roles: map[string]*role{}, policies: map[string]*managedPolicy{}}
		for _, r := range as.Roles {
			inline := maps.Clone(r.Inline)
			if inline == nil {
				inline = map[string]string{}
			}
			a.roles[r.Name] = &role{name: r.Name, arn: r.ARN, path: r.Path, description: r.Description, id: r.ID, trust: r.Trust,
				created: r.Created, visibleAt: r.VisibleAt, tags: slices.Clone(r.Tags), inline: inline, maxSession: r.MaxSession,
				managed: slices.Clone(r.Managed), boundary: r.Boundary}
		}
		for _, p := range as.Policies {
			mp := &managedPolicy{name: p.Name, arn: p.ARN, id: p.ID, path: p.Path, description: p.Description,
				created: p.Created, updated: p.Updated, defaultVersion: p.DefaultVersion, nextVersion: p.NextVersion}
			for _, v := range p.Versions {
				mp.versions = append(mp.versions, &policyVersion{id: v.ID, document: v.Document, created: v.Created})
			}
			if mp.version(mp.defaultVersion) == nil {
				return fmt.Errorf("awsfake: restore managed policy %s: its default version %s is missing", p.ARN, p.DefaultVersion)
			}
			a.policies[p.ARN] = mp
		}
		accounts[as.ID] = a
	}
	keys := map[string]*key{}
	for _, k := range s.Keys {
		keys[k.ARN] = &key{id: k.ID, arn: k.ARN, account: k.Account, region: k.Region, description: k.Description, policy: k.Policy,
			enabled: k.Enabled, manager: k.Manager, spec: k.Spec, created: k.Created, aliases: slices.Clone(k.Aliases)}
	}
	buckets := map[string]*bucket{}
	for _, bs := range s.Buckets {
		b := &bucket{name: bs.Name, owner: bs.Owner, region: bs.Region, created: bs.Created, versioning: bs.Versioning,
			policy: bs.Policy, replication: clone(bs.Replication), encryption: clone(bs.Encryption), ownership: bs.Ownership,
			objectLock: bs.ObjectLock, lockDefault: clone(bs.LockDefault), objects: map[string][]*object{}}
		for _, o := range bs.Objects {
			b.objects[o.Key] = append(b.objects[o.Key], &object{key: o.Key, versionID: o.VersionID, data: slices.Clone(o.Data),
				etag: o.ETag, modified: o.Modified, deleteMarker: o.DeleteMarker, sse: o.SSE, kmsKey: o.KMSKey, bucketKey: o.BucketKey,
				replication: o.Replication, lockMode: o.LockMode, retainUntil: o.RetainUntil, legalHold: o.LegalHold})
		}
		buckets[bs.Name] = b
	}
	pending := map[objectRef]pendingReplication{}
	for _, p := range s.Pending {
		if p.Rule == nil || p.Rule.Destination == nil {
			return fmt.Errorf("awsfake: restore the pending replication of s3://%s/%s: it has no rule with a destination", p.Bucket, p.Key)
		}
		pending[objectRef{p.Bucket, p.Key, p.VersionID}] = pendingReplication{role: p.Role, rule: clone(p.Rule)}
	}
	failures := map[objectRef]string{}
	for _, f := range s.Failed {
		failures[objectRef{f.Bucket, f.Key, f.VersionID}] = f.Reason
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	*c.pcg = pcg // c.rng draws from c.pcg
	c.accounts, c.keys, c.buckets = accounts, keys, buckets
	c.pending, c.failures = pending, failures
	c.sessions = map[string]session{}
	c.idSeq = s.IDSeq
	c.gen++
	for ref := range pending {
		c.afterDelay(ref)
	}
	return nil
}
