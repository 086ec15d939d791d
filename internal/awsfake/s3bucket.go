package awsfake

import (
	"encoding/json"
	"regexp"
	"time"

	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// bucket is an S3 bucket.
type bucket struct {
	name, owner, region string
	created             time.Time
	versioning          s3types.BucketVersioningStatus
	policy              string
	replication         *s3types.ReplicationConfiguration
	encryption          *s3types.ServerSideEncryptionConfiguration
	ownership           s3types.ObjectOwnership
	// objectLock is Object Lock enabled; lockDefault is its default
	// retention (nil for none).
	objectLock  bool
	lockDefault *s3types.DefaultRetention
	// objects maps a key to its versions, oldest first.
	objects map[string][]*object
}

// object is one version of an S3 object (or a delete marker).
type object struct {
	key, versionID string
	data           []byte
	etag           string
	modified       time.Time
	deleteMarker   bool
	sse            s3types.ServerSideEncryption
	kmsKey         string
	bucketKey      bool
	replication    s3types.ReplicationStatus
	// lockMode and retainUntil are the version's Object Lock retention
	// ("" for none); legalHold its legal hold.
	lockMode    s3types.ObjectLockMode
	retainUntil time.Time
	legalHold   bool
}

// locked reports whether Object Lock protects the version from deletion at
// now: a legal hold, or a retention period not yet over (governance mode
// yields to a bypass).
// See https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-lock.html
func (o *object) locked(now time.Time, bypassGovernance bool) bool {
	switch {
	case o.legalHold:
		return true
	case o.lockMode == "" || !now.Before(o.retainUntil):
		return false
	case o.lockMode == s3types.ObjectLockModeGovernance:
		return !bypassGovernance
	default:
		return true
	}
}

// defaultRetention returns the retention a new version gets in b, "" when
// b has no default retention.
func (b *bucket) defaultRetention(now time.Time) (s3types.ObjectLockMode, time.Time) {
	if !b.objectLock || b.lockDefault == nil || b.lockDefault.Mode == "" {
		return "", time.Time{}
	}
	d := b.lockDefault
	until := now.AddDate(int(deref(d.Years)), 0, int(deref(d.Days)))
	return s3types.ObjectLockMode(d.Mode), until
}

func (b *bucket) arn() string { return "arn:aws:s3:::" + b.name }

// version returns the object version with this ID, or the latest version
// when versionID is "", or nil.
func (b *bucket) version(k, versionID string) *object {
	vs := b.objects[k]
	if len(vs) == 0 {
		return nil
	}
	if versionID == "" {
		return vs[len(vs)-1]
	}
	for _, o := range vs {
		if o.versionID == versionID {
			return o
		}
	}
	return nil
}

// add appends a version; in a bucket that was never versioned (or is
// suspended) it replaces the "null" version, as S3 does.
func (b *bucket) add(o *object) {
	vs := b.objects[o.key]
	if o.versionID == "null" {
		for i, x := range vs {
			if x.versionID == "null" {
				vs = append(vs[:i], vs[i+1:]...)
				break
			}
		}
	}
	b.objects[o.key] = append(vs, o)
}

func (b *bucket) remove(k, versionID string) {
	vs := b.objects[k]
	for i, x := range vs {
		if x.versionID == versionID {
			vs = append(vs[:i], vs[i+1:]...)
			break
		}
	}
	if len(vs) == 0 {
		delete(b.objects, k)
	} else {
		b.objects[k] = vs
	}
}

// defaultKMSKey returns the key of the bucket's default SSE-KMS
// encryption, if any, and whether S3 Bucket Keys are on.
func (b *bucket) defaultKMSKey() (string, bool) {
	if b.encryption == nil {
		return "", false
	}
	for _, r := range b.encryption.Rules {
		if d := r.ApplyServerSideEncryptionByDefault; d != nil && (d.SSEAlgorithm == s3types.ServerSideEncryptionAwsKms || d.SSEAlgorithm == s3types.ServerSideEncryptionAwsKmsDsse) {
			return deref(d.KMSMasterKeyID), deref(r.BucketKeyEnabled)
		}
	}
	return "", false
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// clone deep-copies an SDK value through JSON (the SDK's types are plain
// exported fields), so stored documents never share memory with callers.
func clone[T any](v *T) *T {
	if v == nil {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	out := new(T)
	if err := json.Unmarshal(b, out); err != nil {
		panic(err)
	}
	return out
}

var bucketNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)
