package provision_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	ststypes "github.com/aws/aws-sdk-go-v2/service/sts/types"

	"github.com/bucketbridge/bucketbridge/internal/awsfake"
	"github.com/bucketbridge/bucketbridge/internal/provision"
)

// countingSTS counts the AssumeRole calls that reach the fake.
type countingSTS struct {
	*awsfake.STS
	calls atomic.Int32
}

func (c *countingSTS) AssumeRole(ctx context.Context, in *sts.AssumeRoleInput, optFns ...func(*sts.Options)) (*sts.AssumeRoleOutput, error) {
	c.calls.Add(1)
	return c.STS.AssumeRole(ctx, in, optFns...)
}

// TestSessionsCacheCredentials: concurrent sessions in one account share one
// AssumeRole until the credentials near expiry, and act in that account.
func TestSessionsCacheCredentials(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	c := awsfake.NewDemo("", "")
	base := &countingSTS{STS: c.STS(awsfake.DemoServiceAccount)}
	s := provision.NewAssumingSessions(base, func(creds ststypes.Credentials, region string) (*provision.Account, error) {
		cl, err := c.ClientsFor(creds, region)
		if err != nil {
			return nil, err
		}
		return &provision.Account{ID: cl.Account, STS: cl.STS, IAM: cl.IAM, KMS: cl.KMS, S3: cl.S3}, nil
	}, awsfake.DefaultProvisionerRole, awsfake.DefaultExternalID)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for _, region := range []string{"us-east-1", "us-west-2"} {
				a, err := s.Account(ctx, srcAcct, region)
				if err != nil {
					t.Error(err)
					return
				}
				id, err := a.STS.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
				if err != nil || aws.ToString(id.Account) != srcAcct {
					t.Errorf("caller identity %v %v", id, err)
				}
			}
		})
	}
	wg.Wait()
	if n := base.calls.Load(); n != 1 {
		t.Errorf("AssumeRole called %d times, want 1", n)
	}
}
