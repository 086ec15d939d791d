package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	"github.com/bucketbridge/bucketbridge/internal/policy"
)

// account is one of the run's two accounts, acting as its profile.
type account struct {
	name    string // "source" or "destination"
	account string
	region  string
	cfg     aws.Config
	s3      *s3.Client
	kms     *kms.Client
	iam     *iam.Client
}

// world is what the run creates in both accounts, and how to delete it.
type world struct {
	s   settings
	out io.Writer
	// id names everything the run creates, so that nothing of anyone
	// else's is ever touched.
	id   string
	a, b *account
	svc  string // the server's own account: the source profile's

	externalID, provisionerRole, boundary string
	keyA, keyB                            string
	// x is the source bucket with SSE-KMS default encryption, x2 the one
	// with SSE-S3, y the destination.
	x, x2, y string
	// foreign is the statement of someone else's in y's policy.
	foreign string

	mu   sync.Mutex
	undo []undoStep
}

// undoStep deletes one thing the run created.
type undoStep struct {
	what string
	do   func(ctx context.Context) error
}

func (w *world) created(what string, do func(ctx context.Context) error) {
	w.onCleanup(what, do)
	fmt.Fprintln(w.out, "created", what)
}

// onCleanup registers a deletion for cleanup.
func (w *world) onCleanup(what string, do func(ctx context.Context) error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.undo = append(w.undo, undoStep{what, do})
}

// inventory lists what the run created and has not deleted.
func (w *world) inventory() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, u := range w.undo {
		out = append(out, u.what)
	}
	return strings.Join(out, "; ")
}

// cleanup deletes what the run created, newest first, going on after a
// failure so that as little as possible is left.
func (w *world) cleanup(ctx context.Context) error {
	w.mu.Lock()
	steps := slices.Clone(w.undo)
	w.mu.Unlock()
	var errs []error
	var left []undoStep
	for i := len(steps) - 1; i >= 0; i-- {
		if err := steps[i].do(ctx); err != nil {
			errs = append(errs, fmt.Errorf("delete %s: %w", steps[i].what, err))
			left = append([]undoStep{steps[i]}, left...)
		}
	}
	w.mu.Lock()
	w.undo = left
	w.mu.Unlock()
	return errors.Join(errs...)
}

func randomID() string {
	b := make([]byte, 5)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// newWorld opens both profiles and proves they act in two accounts.
func newWorld(ctx context.Context, s settings, out io.Writer) (*world, error) {
	w := &world{s: s, out: out, id: randomID()}
	var err error
	if w.a, err = openAccount(ctx, s, "source", s.SourceProfile, s.SourceRegion); err != nil {
		return nil, err
	}
	if w.b, err = openAccount(ctx, s, "destination", s.DestinationProfile, s.DestinationRegion); err != nil {
		return nil, err
	}
	if w.a.account == w.b.account {
		return nil, fmt.Errorf("both profiles act in account %s: cross-account replication needs two accounts", w.a.account)
	}
	w.svc = w.a.account
	w.externalID = "bucketbridge-acceptance-" + w.id
	w.provisionerRole = "BucketbridgeAcceptance-" + w.id
	w.boundary = "BucketbridgeAcceptanceBoundary-" + w.id
	w.x, w.x2, w.y = "bb-acceptance-"+w.id+"-src", "bb-acceptance-"+w.id+"-src-sse-s3", "bb-acceptance-"+w.id+"-dst"
	fmt.Fprintf(out, "run %s: source account %s (%s, profile %s), destination account %s (%s, profile %s)\n",
		w.id, w.a.account, w.a.region, s.SourceProfile, w.b.account, w.b.region, s.DestinationProfile)
	return w, nil
}

func openAccount(ctx context.Context, s settings, name, profile, region string) (*account, error) {
	opts := []func(*config.LoadOptions) error{config.WithSharedConfigProfile(profile), config.WithRegion(region)}
	if s.Endpoint != "" {
		opts = append(opts, config.WithBaseEndpoint(s.Endpoint))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("load profile %s (%s): %w", profile, name, err)
	}
	id, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		return nil, fmt.Errorf("who is profile %s (%s): %w", profile, name, err)
	}
	return &account{name: name, account: aws.ToString(id.Account), region: region, cfg: cfg,
		s3:  s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = s.Endpoint != "" }),
		kms: kms.NewFromConfig(cfg), iam: iam.NewFromConfig(cfg)}, nil
}

// createProvisioners creates the provisioner role in both accounts, with
// the documented trust policy and permissions, and the documented
// permissions boundary in the source account.
func (w *world) createProvisioners(ctx context.Context, d provisionerDocs) error {
	p, err := provisionerPoliciesFor(d, w.svc, w.a.account, w.b.account, w.externalID, w.boundary)
	if err != nil {
		return err
	}
	b, err := w.a.iam.CreatePolicy(ctx, &iam.CreatePolicyInput{PolicyName: aws.String(w.boundary), PolicyDocument: aws.String(p.Boundary),
		Description: aws.String("bucketbridge acceptance run " + w.id + ": permissions boundary of replication roles")})
	if err != nil {
		return fmt.Errorf("create the permissions boundary: %w", err)
	}
	boundaryARN := aws.ToString(b.Policy.Arn)
	w.created("managed policy "+boundaryARN, func(ctx context.Context) error {
		_, err := w.a.iam.DeletePolicy(ctx, &iam.DeletePolicyInput{PolicyArn: aws.String(boundaryARN)})
		return ignoreNotFound(err)
	})
	for _, acct := range []struct {
		a           *account
		permissions string
	}{{w.a, p.Source}, {w.b, p.Destination}} {
		a := acct.a
		if _, err := a.iam.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(w.provisionerRole), AssumeRolePolicyDocument: aws.String(p.Trust),
			Description: aws.String("bucketbridge acceptance run " + w.id + ": provisioner")}); err != nil {
			return fmt.Errorf("create the provisioner role in %s: %w", a.name, err)
		}
		w.created(fmt.Sprintf("role %s in %s account %s", w.provisionerRole, a.name, a.account), func(ctx context.Context) error {
			if _, err := a.iam.DeleteRolePolicy(ctx, &iam.DeleteRolePolicyInput{RoleName: aws.String(w.provisionerRole), PolicyName: aws.String("provisioner")}); ignoreNotFound(err) != nil {
				return err
			}
			_, err := a.iam.DeleteRole(ctx, &iam.DeleteRoleInput{RoleName: aws.String(w.provisionerRole)})
			return ignoreNotFound(err)
		})
		if _, err := a.iam.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String(w.provisionerRole), PolicyName: aws.String("provisioner"),
			PolicyDocument: aws.String(acct.permissions)}); err != nil {
			return fmt.Errorf("put the provisioner's documented permissions in %s: %w", a.name, err)
		}
	}
	return nil
}

// createSides creates the keys and buckets of both sides.
func (w *world) createSides(ctx context.Context) error {
	var err error
	if w.keyA, err = w.createKey(ctx, w.a); err != nil {
		return err
	}
	if w.keyB, err = w.createKey(ctx, w.b); err != nil {
		return err
	}
	kmsDefault := func(key string) *s3types.ServerSideEncryptionConfiguration {
		return &s3types.ServerSideEncryptionConfiguration{Rules: []s3types.ServerSideEncryptionRule{{
			ApplyServerSideEncryptionByDefault: &s3types.ServerSideEncryptionByDefault{SSEAlgorithm: s3types.ServerSideEncryptionAwsKms, KMSMasterKeyID: aws.String(key)},
			BucketKeyEnabled:                   aws.Bool(true),
		}}}
	}
	sseS3 := &s3types.ServerSideEncryptionConfiguration{Rules: []s3types.ServerSideEncryptionRule{{
		ApplyServerSideEncryptionByDefault: &s3types.ServerSideEncryptionByDefault{SSEAlgorithm: s3types.ServerSideEncryptionAes256}}}}
	w.foreign = `{"Sid":"DenyInsecureTransport","Effect":"Deny","Principal":"*","Action":"s3:*","Resource":["arn:aws:s3:::` + w.y + `","arn:aws:s3:::` + w.y + `/*"],"Condition":{"Bool":{"aws:SecureTransport":"false"}}}`
	// A failed run may leave replication roles (and their policies)
	// behind; their names come from the run's buckets, so they are its own.
	w.onCleanup("replication roles of "+w.x+" and "+w.x2, func(ctx context.Context) error {
		return errors.Join(deleteReplicationRole(ctx, w.a, policy.RoleName(w.x)), deleteReplicationRole(ctx, w.a, policy.RoleName(w.x2)))
	})
	for _, b := range []struct {
		a      *account
		name   string
		enc    *s3types.ServerSideEncryptionConfiguration
		policy string
	}{
		{w.a, w.x, kmsDefault(w.keyA), ""},
		{w.a, w.x2, sseS3, ""},
		{w.b, w.y, kmsDefault(w.keyB), `{"Version":"2012-10-17","Statement":[` + w.foreign + `]}`},
	} {
		if err := w.createBucket(ctx, b.a, b.name, b.enc, b.policy); err != nil {
			return err
		}
	}
	return w.waitForProvisioners(ctx)
}

func (w *world) createKey(ctx context.Context, a *account) (string, error) {
	k, err := a.kms.CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String("bucketbridge acceptance run " + w.id + ": " + a.name + " key")})
	if err != nil {
		return "", fmt.Errorf("create the %s key: %w", a.name, err)
	}
	arn, id := aws.ToString(k.KeyMetadata.Arn), aws.ToString(k.KeyMetadata.KeyId)
	// By key ID: AWS takes an ARN too, moto answers 500 to one.
	w.created("KMS key "+arn, func(ctx context.Context) error {
		_, err := a.kms.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: aws.String(id), PendingWindowInDays: aws.Int32(7)})
		return ignoreNotFound(err)
	})
	return arn, nil
}

func (w *world) createBucket(ctx context.Context, a *account, name string, enc *s3types.ServerSideEncryptionConfiguration, bucketPolicy string) error {
	in := &s3.CreateBucketInput{Bucket: aws.String(name)}
	if a.region != "us-east-1" {
		in.CreateBucketConfiguration = &s3types.CreateBucketConfiguration{LocationConstraint: s3types.BucketLocationConstraint(a.region)}
	}
	if _, err := a.s3.CreateBucket(ctx, in); err != nil {
		return fmt.Errorf("create bucket %s: %w", name, err)
	}
	w.created(fmt.Sprintf("bucket %s in %s account %s", name, a.name, a.account), func(ctx context.Context) error { return emptyAndDeleteBucket(ctx, a, name) })
	if _, err := a.s3.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{Bucket: aws.String(name),
		VersioningConfiguration: &s3types.VersioningConfiguration{Status: s3types.BucketVersioningStatusEnabled}}); err != nil {
		return fmt.Errorf("enable versioning on %s: %w", name, err)
	}
	if _, err := a.s3.PutBucketEncryption(ctx, &s3.PutBucketEncryptionInput{Bucket: aws.String(name), ServerSideEncryptionConfiguration: enc}); err != nil {
		return fmt.Errorf("set default encryption of %s: %w", name, err)
	}
	if bucketPolicy != "" {
		if _, err := a.s3.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String(name), Policy: aws.String(bucketPolicy)}); err != nil {
			return fmt.Errorf("put the policy of %s: %w", name, err)
		}
	}
	return nil
}

// deleteReplicationRole deletes a replication role a failed run left, with
// its inline and attached managed policies; one that is gone is fine.
func deleteReplicationRole(ctx context.Context, a *account, role string) error {
	names, err := a.iam.ListRolePolicies(ctx, &iam.ListRolePoliciesInput{RoleName: aws.String(role)})
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, n := range names.PolicyNames {
		if _, err := a.iam.DeleteRolePolicy(ctx, &iam.DeleteRolePolicyInput{RoleName: aws.String(role), PolicyName: aws.String(n)}); ignoreNotFound(err) != nil {
			return err
		}
	}
	attached, err := a.iam.ListAttachedRolePolicies(ctx, &iam.ListAttachedRolePoliciesInput{RoleName: aws.String(role)})
	if err != nil {
		return ignoreNotFound(err)
	}
	for _, p := range attached.AttachedPolicies {
		if _, err := a.iam.DetachRolePolicy(ctx, &iam.DetachRolePolicyInput{RoleName: aws.String(role), PolicyArn: p.PolicyArn}); ignoreNotFound(err) != nil {
			return err
		}
		versions, err := a.iam.ListPolicyVersions(ctx, &iam.ListPolicyVersionsInput{PolicyArn: p.PolicyArn})
		if err != nil {
			return ignoreNotFound(err)
		}
		for _, v := range versions.Versions {
			if !v.IsDefaultVersion {
				if _, err := a.iam.DeletePolicyVersion(ctx, &iam.DeletePolicyVersionInput{PolicyArn: p.PolicyArn, VersionId: v.VersionId}); ignoreNotFound(err) != nil {
					return err
				}
			}
		}
		if _, err := a.iam.DeletePolicy(ctx, &iam.DeletePolicyInput{PolicyArn: p.PolicyArn}); ignoreNotFound(err) != nil {
			return err
		}
	}
	_, err = a.iam.DeleteRole(ctx, &iam.DeleteRoleInput{RoleName: aws.String(role)})
	return ignoreNotFound(err)
}

// emptyAndDeleteBucket deletes every version and delete marker of a bucket
// (canaries a failed run left too) and the bucket.
func emptyAndDeleteBucket(ctx context.Context, a *account, name string) error {
	in := &s3.ListObjectVersionsInput{Bucket: aws.String(name)}
	for {
		out, err := a.s3.ListObjectVersions(ctx, in)
		if isNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		type version struct{ key, id *string }
		var vs []version
		for _, v := range out.Versions {
			vs = append(vs, version{v.Key, v.VersionId})
		}
		for _, m := range out.DeleteMarkers {
			vs = append(vs, version{m.Key, m.VersionId})
		}
		for _, v := range vs {
			if _, err := a.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(name), Key: v.key, VersionId: v.id}); ignoreNotFound(err) != nil {
				return err
			}
		}
		if !aws.ToBool(out.IsTruncated) {
			break
		}
		in.KeyMarker, in.VersionIdMarker = out.NextKeyMarker, out.NextVersionIdMarker
	}
	_, err := a.s3.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(name)})
	return ignoreNotFound(err)
}

// waitForProvisioners waits until both provisioner roles can be assumed and
// their permissions are in force (IAM is eventually consistent), reading a
// bucket and a key through each as the server will.
func (w *world) waitForProvisioners(ctx context.Context) error {
	base := sts.NewFromConfig(w.a.cfg)
	for _, side := range []struct {
		a           *account
		bucket, key string
	}{{w.a, w.x, w.keyA}, {w.b, w.y, w.keyB}} {
		arn := "arn:aws:iam::" + side.a.account + ":role/" + w.provisionerRole
		cfg := side.a.cfg.Copy()
		cfg.Credentials = aws.NewCredentialsCache(stscreds.NewAssumeRoleProvider(base, arn, func(o *stscreds.AssumeRoleOptions) {
			o.ExternalID = aws.String(w.externalID)
		}))
		s3c := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = w.s.Endpoint != "" })
		kmsc := kms.NewFromConfig(cfg)
		err := poll(ctx, 3*time.Minute, func() error {
			if _, err := s3c.GetBucketVersioning(ctx, &s3.GetBucketVersioningInput{Bucket: aws.String(side.bucket)}); err != nil {
				return err
			}
			_, err := kmsc.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(side.key)})
			return err
		})
		if err != nil {
			return fmt.Errorf("the provisioner role %s cannot be used yet: %w", arn, err)
		}
	}
	fmt.Fprintln(w.out, "both provisioner roles are usable")
	return nil
}

// poll calls f until it succeeds or within has passed, with backoff from a
// second to ten.
func poll(ctx context.Context, within time.Duration, f func() error) error {
	deadline := time.Now().Add(within)
	wait := time.Second
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, 10*time.Second)
	}
}

// snapshot is every document bucketbridge may touch, as read at a moment.
type snapshot struct {
	DestinationPolicy *policy.Document
	DestinationKey    policy.Document
	SourceKey         policy.Document
	// Replication and Encryption are per source bucket; Replication holds
	// the configuration's JSON ("" for none).
	Replication map[string]string
	Encryption  map[string]*policy.BucketEncryption
	// Roles are the replication roles and ManagedPolicies the managed
	// policies bucketbridge's names would give, that exist.
	Roles           []string
	ManagedPolicies []string
	// Canaries counts canary versions per bucket.
	Canaries map[string]int
}

func (w *world) snapshot(ctx context.Context) (snapshot, error) {
	s := snapshot{Replication: map[string]string{}, Encryption: map[string]*policy.BucketEncryption{}, Canaries: map[string]int{}}
	out, err := w.b.s3.GetBucketPolicy(ctx, &s3.GetBucketPolicyInput{Bucket: aws.String(w.y)})
	switch {
	case isNotFound(err):
	case err != nil:
		return s, fmt.Errorf("get the policy of %s: %w", w.y, err)
	default:
		d, err := policy.Parse([]byte(aws.ToString(out.Policy)))
		if err != nil {
			return s, err
		}
		s.DestinationPolicy = &d
	}
	for _, k := range []struct {
		a   *account
		key string
		to  *policy.Document
	}{{w.b, w.keyB, &s.DestinationKey}, {w.a, w.keyA, &s.SourceKey}} {
		kp, err := k.a.kms.GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: aws.String(k.key), PolicyName: aws.String("default")})
		if err != nil {
			return s, fmt.Errorf("get the policy of %s: %w", k.key, err)
		}
		if *k.to, err = policy.Parse([]byte(aws.ToString(kp.Policy))); err != nil {
			return s, err
		}
	}
	var roles []string
	for _, b := range []string{w.x, w.x2} {
		rc, err := w.a.s3.GetBucketReplication(ctx, &s3.GetBucketReplicationInput{Bucket: aws.String(b)})
		switch {
		case isNotFound(err):
		case err != nil:
			return s, fmt.Errorf("get the replication of %s: %w", b, err)
		default:
			j, _ := json.Marshal(rc.ReplicationConfiguration)
			s.Replication[b] = string(j)
		}
		enc, err := w.a.s3.GetBucketEncryption(ctx, &s3.GetBucketEncryptionInput{Bucket: aws.String(b)})
		switch {
		case isNotFound(err):
			s.Encryption[b] = nil
		case err != nil:
			return s, fmt.Errorf("get the default encryption of %s: %w", b, err)
		default:
			j, _ := json.Marshal(enc.ServerSideEncryptionConfiguration)
			var c policy.BucketEncryption
			if err := json.Unmarshal(j, &c); err != nil {
				return s, err
			}
			s.Encryption[b] = &c
		}
		roles = append(roles, policy.RoleName(b))
	}
	for _, r := range roles {
		if _, err := w.a.iam.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(r)}); err == nil {
			s.Roles = append(s.Roles, r)
		} else if !isNotFound(err) {
			return s, fmt.Errorf("get role %s: %w", r, err)
		}
	}
	p := iam.NewListPoliciesPaginator(w.a.iam, &iam.ListPoliciesInput{Scope: iamtypes.PolicyScopeTypeLocal})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return s, fmt.Errorf("list managed policies: %w", err)
		}
		for _, mp := range page.Policies {
			for _, r := range roles {
				if strings.HasPrefix(aws.ToString(mp.PolicyName), strings.TrimSuffix(policy.ManagedPolicyName(r, 0), "0")) {
					s.ManagedPolicies = append(s.ManagedPolicies, aws.ToString(mp.PolicyName))
				}
			}
		}
	}
	for _, side := range []struct {
		a *account
		b string
	}{{w.a, w.x}, {w.a, w.x2}, {w.b, w.y}} {
		out, err := side.a.s3.ListObjectVersions(ctx, &s3.ListObjectVersionsInput{Bucket: aws.String(side.b)})
		if err != nil {
			return s, fmt.Errorf("list versions in %s: %w", side.b, err)
		}
		for _, v := range out.Versions {
			if strings.Contains(aws.ToString(v.Key), "bucketbridge-canary/") {
				s.Canaries[side.b]++
			}
		}
		for _, m := range out.DeleteMarkers {
			if strings.Contains(aws.ToString(m.Key), "bucketbridge-canary/") {
				s.Canaries[side.b]++
			}
		}
	}
	return s, nil
}

// differences says how after differs from s, compared by meaning.
func (s snapshot) differences(after snapshot) []string {
	var out []string
	switch {
	case (s.DestinationPolicy == nil) != (after.DestinationPolicy == nil):
		out = append(out, fmt.Sprintf("the destination bucket policy was %s and is %s", docString(s.DestinationPolicy), docString(after.DestinationPolicy)))
	case s.DestinationPolicy != nil && !policy.Equal(*s.DestinationPolicy, *after.DestinationPolicy):
		out = append(out, fmt.Sprintf("the destination bucket policy was %s and is %s", docString(s.DestinationPolicy), docString(after.DestinationPolicy)))
	}
	if !policy.Equal(s.DestinationKey, after.DestinationKey) {
		out = append(out, fmt.Sprintf("the destination key's policy was %s and is %s", docString(&s.DestinationKey), docString(&after.DestinationKey)))
	}
	if !policy.Equal(s.SourceKey, after.SourceKey) {
		out = append(out, fmt.Sprintf("the source key's policy was %s and is %s", docString(&s.SourceKey), docString(&after.SourceKey)))
	}
	if !reflect.DeepEqual(s.Replication, after.Replication) {
		out = append(out, fmt.Sprintf("the source buckets' replication configurations were %v and are %v", s.Replication, after.Replication))
	}
	for b, enc := range s.Encryption {
		x, y := encString(enc), encString(after.Encryption[b])
		if x != y {
			out = append(out, fmt.Sprintf("the default encryption of %s was %s and is %s", b, x, y))
		}
	}
	if !slices.Equal(s.Roles, after.Roles) || !slices.Equal(s.ManagedPolicies, after.ManagedPolicies) {
		out = append(out, fmt.Sprintf("replication roles %v and their managed policies %v were %v and %v", after.Roles, after.ManagedPolicies, s.Roles, s.ManagedPolicies))
	}
	for b, n := range after.Canaries {
		if n != s.Canaries[b] {
			out = append(out, fmt.Sprintf("bucket %s holds %d canary versions (%d before)", b, n, s.Canaries[b]))
		}
	}
	return out
}

func docString(d *policy.Document) string {
	if d == nil {
		return "none"
	}
	b, _ := json.Marshal(d)
	return string(b)
}

func encString(c *policy.BucketEncryption) string {
	if c == nil {
		return "none"
	}
	d := c.Default()
	return fmt.Sprintf("%s %s bucket keys %v", d.Algorithm, d.KMSKeyID, d.BucketKey)
}

// isNotFound reports AWS's "there is no such thing" answers the run meets.
func isNotFound(err error) bool {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return false
	}
	switch ae.ErrorCode() {
	case "NoSuchBucket", "NotFound", "NoSuchBucketPolicy", "ReplicationConfigurationNotFoundError", "NoSuchEntity",
		"NotFoundException", "ServerSideEncryptionConfigurationNotFoundError", "NoSuchKey", "NoSuchVersion":
		return true
	}
	return false
}

func ignoreNotFound(err error) error {
	if isNotFound(err) {
		return nil
	}
	return err
}

// databaseURL is url with its database replaced by name.
func databaseURL(base, name string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("DATABASE_URL: %w", err)
	}
	u.Path = "/" + name
	return u.String(), nil
}
