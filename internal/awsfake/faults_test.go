package awsfake

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// clock is a settable clock for Config.NowFunc.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func getPolicy(t *testing.T, c *Cloud) string {
	t.Helper()
	out, err := c.S3(DemoDestinationAccount, DemoDestinationRegion).GetBucketPolicy(context.Background(), &s3.GetBucketPolicyInput{Bucket: aws.String(DemoDestinationBucket)})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.Policy)
}

const otherPolicy = `{"Version":"2012-10-17","Statement":[{"Sid":"Other","Effect":"Allow","Principal":{"AWS":"111111111111"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::demo-destination/*"}]}`

func putPolicy(c *Cloud) error {
	_, err := c.S3(DemoDestinationAccount, DemoDestinationRegion).PutBucketPolicy(context.Background(), &s3.PutBucketPolicyInput{Bucket: aws.String(DemoDestinationBucket), Policy: aws.String(otherPolicy)})
	return err
}

func TestThrottleNextCallsThenRecover(t *testing.T) {
	t.Parallel()
	c := NewDemo("", "")
	c.Faults(DemoDestinationAccount).Throttle("s3:PutBucketPolicy", 2).Throttle("kms:*", 1)
	for i := range 2 {
		err := putPolicy(c)
		wantCode(t, "throttled put", err, "SlowDown")
		var re *awshttp.ResponseError
		if !errors.As(err, &re) || re.HTTPStatusCode() != 503 {
			t.Errorf("call %d: %v, want HTTP 503", i, err)
		}
		if getPolicy(t, c) != DemoDestinationPolicy {
			t.Fatalf("a throttled call changed the policy")
		}
	}
	if err := putPolicy(c); err != nil {
		t.Fatalf("third call: %v", err)
	}
	if getPolicy(t, c) != otherPolicy {
		t.Errorf("policy not written after throttling ended")
	}
	_, err := c.KMS(DemoDestinationAccount, DemoDestinationRegion).DescribeKey(context.Background(), &kms.DescribeKeyInput{KeyId: aws.String(DemoDestinationKey)})
	wantCode(t, "throttled KMS", err, "ThrottlingException")
	// Faults are per account: the source account is not throttled.
	if _, err := c.KMS(DemoSourceAccount, DemoSourceRegion).DescribeKey(context.Background(), &kms.DescribeKeyInput{KeyId: aws.String(DemoSourceKey)}); err != nil {
		t.Errorf("other account: %v", err)
	}
}

func TestThrottleRateAndReset(t *testing.T) {
	t.Parallel()
	c := NewDemo("", "")
	f := c.Faults(DemoSourceAccount).ThrottleRate("iam:*", 1)
	_, err := c.IAM(DemoSourceAccount).GetRole(context.Background(), &iam.GetRoleInput{RoleName: aws.String(DefaultProvisionerRole)})
	wantCode(t, "IAM at rate 1", err, "Throttling")
	f.Reset()
	if _, err := c.IAM(DemoSourceAccount).GetRole(context.Background(), &iam.GetRoleInput{RoleName: aws.String(DefaultProvisionerRole)}); err != nil {
		t.Errorf("after Reset: %v", err)
	}
}

func TestFail5xx(t *testing.T) {
	t.Parallel()
	c := NewDemo("", "")
	c.Faults(DemoSourceAccount).Fail5xx("*", 3)
	ctx := context.Background()
	_, err := c.S3(DemoSourceAccount, DemoSourceRegion).HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(DemoSourceBucket)})
	wantCode(t, "S3", err, "InternalError")
	_, err = c.KMS(DemoSourceAccount, DemoSourceRegion).GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: aws.String(DemoSourceKey)})
	wantCode(t, "KMS", err, "KMSInternalException")
	_, err = c.IAM(DemoSourceAccount).GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(DefaultProvisionerRole)})
	wantCode(t, "IAM", err, "ServiceFailure")
	var re *awshttp.ResponseError
	if !errors.As(err, &re) || re.HTTPStatusCode() != 500 {
		t.Errorf("%v, want HTTP 500", err)
	}
	if _, err := c.IAM(DemoSourceAccount).GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(DefaultProvisionerRole)}); err != nil {
		t.Errorf("fourth call: %v", err)
	}
}

func TestLoseResponseAppliesTheChange(t *testing.T) {
	t.Parallel()
	c := NewDemo("", "")
	c.Faults(DemoDestinationAccount).LoseResponse("s3:PutBucketPolicy", 1)
	err := putPolicy(c)
	if !errors.Is(err, ErrResponseLost) {
		t.Fatalf("err %v, want ErrResponseLost", err)
	}
	if got := getPolicy(t, c); got != otherPolicy {
		t.Errorf("policy %s, want the one whose response was lost", got)
	}
	if err := putPolicy(c); err != nil {
		t.Errorf("second call: %v", err)
	}
}

func TestLatencyHonoursContext(t *testing.T) {
	t.Parallel()
	c := NewDemo("", "")
	c.Faults(DemoDestinationAccount).Latency("s3:*", time.Hour, time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.S3(DemoDestinationAccount, DemoDestinationRegion).PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String(DemoDestinationBucket), Policy: aws.String(otherPolicy)})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	c.Faults(DemoDestinationAccount).Reset()
	if getPolicy(t, c) != DemoDestinationPolicy {
		t.Errorf("a cancelled call changed the policy")
	}
	c.Faults(DemoDestinationAccount).Latency("s3:GetBucketPolicy", time.Millisecond, time.Millisecond)
	getPolicy(t, c) // completes
}

func TestRoleInvisibleToS3AndKMS(t *testing.T) {
	t.Parallel()
	clk := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	c := NewWithConfig(Config{NowFunc: clk.Now})
	c.SeedDemo("", "")
	ctx := context.Background()
	c.Faults(DemoSourceAccount).RoleInvisibleFor(10 * time.Second)
	must1[*iam.CreateRoleOutput](t, "create role")(c.IAM(DemoSourceAccount).CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(canaryRole), AssumeRolePolicyDocument: aws.String(trustS3)}))
	// IAM sees it at once.
	must1[*iam.GetRoleOutput](t, "get role")(c.IAM(DemoSourceAccount).GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(canaryRole)}))

	d := correctDocs()
	kmsB := c.KMS(DemoDestinationAccount, DemoDestinationRegion)
	s3B := c.S3(DemoDestinationAccount, DemoDestinationRegion)
	s3A := c.S3(DemoSourceAccount, DemoSourceRegion)
	putKey := func() error {
		_, err := kmsB.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: aws.String(DemoDestinationKey), Policy: aws.String(doc(d.keyPolicyB))})
		return err
	}
	putBucket := func() error {
		_, err := s3B.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String(DemoDestinationBucket), Policy: aws.String(doc(d.bucketPolicy))})
		return err
	}
	putRule := func() error {
		_, err := s3A.PutBucketReplication(ctx, &s3.PutBucketReplicationInput{Bucket: aws.String(DemoSourceBucket), ReplicationConfiguration: &s3types.ReplicationConfiguration{
			Role:  aws.String("arn:aws:iam::" + DemoSourceAccount + ":role/" + canaryRole),
			Rules: []s3types.ReplicationRule{replicationRule("bucketbridge-x", 1, DemoDestinationBucket, DemoDestinationAccount, DemoDestinationKey)},
		}})
		return err
	}
	err := putKey()
	wantCode(t, "PutKeyPolicy while invisible", err, "MalformedPolicyDocumentException")
	if err != nil && !strings.Contains(err.Error(), "invalid principals") {
		t.Errorf("PutKeyPolicy: %v, want the invalid-principal message", err)
	}
	err = putBucket()
	wantCode(t, "PutBucketPolicy while invisible", err, "MalformedPolicy")
	if err != nil && !strings.Contains(err.Error(), "Invalid principal in policy") {
		t.Errorf("PutBucketPolicy: %v, want the invalid-principal message", err)
	}
	// S3 checks neither the role's existence nor its permissions when the
	// rule is put: an invisible role fails replication later instead.
	if err := putRule(); err != nil {
		t.Errorf("PutBucketReplication while invisible: %v, want it accepted", err)
	}

	clk.Advance(10 * time.Second)
	for name, put := range map[string]func() error{"key policy": putKey, "bucket policy": putBucket, "replication": putRule} {
		if err := put(); err != nil {
			t.Errorf("%s once visible: %v", name, err)
		}
	}
}
