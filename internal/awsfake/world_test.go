package awsfake

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	ststypes "github.com/aws/aws-sdk-go-v2/service/sts/types"
	"github.com/aws/smithy-go"
)

// world is one backend of the conformance suite: the fake, or moto.
type world interface {
	// serviceSTS is STS as the service's own identity.
	serviceSTS() stsAPI
	// prepareAccount makes the provisioner role assumable in account.
	prepareAccount(t *testing.T, account string)
	// clients turns AssumeRole credentials into clients in region.
	clients(t *testing.T, creds ststypes.Credentials, region string) clients
}

// clients are the four clients acting as one caller.
type clients struct {
	sts stsAPI
	iam iamAPI
	kms kmsAPI
	s3  s3API
}

const (
	testRole       = "BucketbridgeProvisioner"
	testExternalID = "conformance"
)

// fakeWorld is the in-memory fake.
type fakeWorld struct{ c *Cloud }

func newFakeWorld(t *testing.T) world {
	t.Helper()
	return &fakeWorld{c: NewWithConfig(Config{ReplicationDelay: time.Millisecond})}
}

func (w *fakeWorld) serviceSTS() stsAPI { return w.c.STS(DemoServiceAccount) }
func (w *fakeWorld) prepareAccount(t *testing.T, account string) {
	w.c.AddRole(account, testRole, ProvisionerTrustPolicy(DemoServiceAccount, testExternalID), nil)
}
func (w *fakeWorld) clients(t *testing.T, creds ststypes.Credentials, region string) clients {
	t.Helper()
	cl, err := w.c.ClientsFor(creds, region)
	if err != nil {
		t.Fatal(err)
	}
	return clients{sts: cl.STS, iam: cl.IAM, kms: cl.KMS, s3: cl.S3}
}

// motoWorld is a moto server reached with the real SDK clients.
type motoWorld struct{ url string }

// motoURL is where the tests find moto.
func motoURL() string {
	if u := os.Getenv("MOTO_URL"); u != "" {
		return u
	}
	return "http://127.0.0.1:5000"
}

// newMotoWorld fails the test, saying how to start moto, when moto does
// not answer: the moto half of the suite is never skipped silently.
func newMotoWorld(t *testing.T) world {
	t.Helper()
	u := motoURL()
	hc := &http.Client{Timeout: 3 * time.Second}
	resp, err := hc.Get(u + "/moto-api/")
	if err != nil {
		t.Fatalf("moto does not answer at %s (%v): start it with `python3 -m moto.server -H 127.0.0.1 -p 5000` (or scripts/ensure-moto.sh, or `make test`), or point MOTO_URL at a running moto", u, err)
	}
	resp.Body.Close()
	return &motoWorld{url: u}
}

func (w *motoWorld) config(region string, creds aws.CredentialsProvider) aws.Config {
	return aws.Config{
		Region:           region,
		Credentials:      creds,
		BaseEndpoint:     aws.String(w.url),
		RetryMaxAttempts: 3,
	}
}

// serviceSTS uses static credentials, which moto maps to its default
// account 123456789012 (= DemoServiceAccount).
func (w *motoWorld) serviceSTS() stsAPI {
	return sts.NewFromConfig(w.config("us-east-1", credentials.NewStaticCredentialsProvider("testing", "testing", "")))
}

// prepareAccount does nothing: moto's AssumeRole succeeds for any role ARN
// and ExternalId (MOTO.md).
func (w *motoWorld) prepareAccount(*testing.T, string) {}

func (w *motoWorld) clients(_ *testing.T, creds ststypes.Credentials, region string) clients {
	cfg := w.config(region, credentials.NewStaticCredentialsProvider(aws.ToString(creds.AccessKeyId), aws.ToString(creds.SecretAccessKey), aws.ToString(creds.SessionToken)))
	return clients{
		sts: sts.NewFromConfig(cfg),
		iam: iam.NewFromConfig(cfg),
		kms: kms.NewFromConfig(cfg),
		s3:  s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true }),
	}
}

// assume assumes the provisioner role in account and returns clients in
// region acting there.
func assume(t *testing.T, w world, account, region string) clients {
	t.Helper()
	w.prepareAccount(t, account)
	out, err := w.serviceSTS().AssumeRole(context.Background(), &sts.AssumeRoleInput{
		RoleArn:         aws.String("arn:aws:iam::" + account + ":role/" + testRole),
		RoleSessionName: aws.String("conformance"),
		ExternalId:      aws.String(testExternalID),
	})
	if err != nil {
		t.Fatalf("assume role in %s: %v", account, err)
	}
	return w.clients(t, *out.Credentials, region)
}

// randomAccount returns a fresh account ID, so tests sharing one moto
// server never see each other's resources.
func randomAccount() string { return fmt.Sprintf("9%011d", rand.Int64N(1e11)) }

// randomName returns a unique, valid bucket or role name.
func randomName(prefix string) string { return fmt.Sprintf("%s-%08x", prefix, rand.Uint32()) }

// errCode returns the AWS error code of err ("" if none).
func errCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// wantCode fails unless err carries the AWS error code want.
func wantCode(t *testing.T, what string, err error, want string) {
	t.Helper()
	if got := errCode(err); got != want {
		t.Errorf("%s: error code %q (err %v), want %q", what, got, err, want)
	}
}

func must1[T any](t *testing.T, what string) func(v T, err error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return v
	}
}

func errorsAs[T any](err error, target *T) bool { return errors.As(err, target) }
