// Command seed-moto creates dev mode's demo world (awsfake.Demo: the two
// demo accounts' buckets and keys) in moto, the AWS emulator, acting in each
// account through AssumeRole, so that the server can run with BB_CLOUD=aws
// against moto and find what it finds in dev mode.
//
// moto makes up KMS key IDs, so the keys are found again by an alias
// (alias/bucketbridge-demo-<name>), and their ARNs are printed on standard
// output, one line per key, ready for a shell's eval:
//
//	DEMO_SOURCE_KEY=arn:aws:kms:us-east-1:111111111111:key/…
//	DEMO_DESTINATION_KEY=arn:aws:kms:us-west-2:222222222222:key/…
//
// Running it again is safe, also while the server uses the world: it only
// creates what is missing and puts back what bucketbridge never changes
// (default encryption, object ownership, enabled versioning). Bucket and key
// policies that exist are left alone, since bucketbridge adds its statements
// to them.
//
// It talks to moto only: it signs with moto's dummy credentials whatever the
// environment holds, and refuses an endpoint that does not answer as moto.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	"github.com/bucketbridge/bucketbridge/internal/awsfake"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "seed-moto:", err)
		os.Exit(1)
	}
}

// run seeds the demo world into the moto at -endpoint and prints the keys'
// ARNs on stdout.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("seed-moto", flag.ContinueOnError)
	fs.SetOutput(stderr)
	endpoint := fs.String("endpoint", cmp.Or(getenv("MOTO_URL"), "http://127.0.0.1:5000"), "moto's URL (MOTO_URL)")
	wait := fs.Duration("wait", 30*time.Second, "how long to wait for moto to answer")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	if err := waitForMoto(ctx, *endpoint, *wait); err != nil {
		return err
	}
	world := awsfake.Demo()
	keys, err := seed(ctx, motoConfig(*endpoint), world, log)
	if err != nil {
		return err
	}
	for _, k := range world.Keys {
		fmt.Fprintf(stdout, "DEMO_%s_KEY=%s\n", strings.ToUpper(k.Name), keys[k.ARN()])
	}
	return nil
}

// motoConfig signs with moto's dummy credentials (moto accepts any) and
// reads nothing of the environment, so real credentials never reach moto
// and the demo world never reaches a real account.
func motoConfig(endpoint string) aws.Config {
	return aws.Config{
		Region:       awsfake.DemoSourceRegion,
		Credentials:  credentials.NewStaticCredentialsProvider("testing", "testing", ""),
		BaseEndpoint: aws.String(endpoint),
	}
}

// waitForMoto polls moto's own API until it answers or wait has passed:
// under docker compose moto may still be starting.
func waitForMoto(ctx context.Context, endpoint string, wait time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(endpoint, "/")+"/moto-api/", nil)
		if err != nil {
			return fmt.Errorf("moto endpoint %q: %w", endpoint, err)
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET /moto-api/ answered %s", resp.Status)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s does not answer as moto within %s (start it with scripts/ensure-moto.sh): %w", endpoint, wait, last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// seed creates w in the moto that base points at and returns, for each of
// w's keys, its ARN in moto keyed by its ARN in w.
func seed(ctx context.Context, base aws.Config, w awsfake.DemoWorld, log *slog.Logger) (map[string]string, error) {
	s := &seeder{base: base, log: log, creds: map[string]aws.CredentialsProvider{}}
	keys := map[string]string{}
	for _, k := range w.Keys {
		arn, err := s.key(ctx, k)
		if err != nil {
			return nil, err
		}
		keys[k.ARN()] = arn
	}
	for _, b := range w.Buckets {
		keyARN := ""
		if b.KMSKey != "" {
			var ok bool
			if keyARN, ok = keys[b.KMSKey]; !ok {
				return nil, fmt.Errorf("bucket %s is encrypted with %s, which is not one of the world's keys", b.Name, b.KMSKey)
			}
		}
		if err := s.bucket(ctx, b, keyARN); err != nil {
			return nil, err
		}
	}
	return keys, nil
}

// seeder holds one AssumeRole session per account.
type seeder struct {
	base  aws.Config
	log   *slog.Logger
	creds map[string]aws.CredentialsProvider
}

// seedRole is the role the seeder assumes in each account; moto hands out
// credentials of the account in the ARN whether or not the role exists.
const seedRole = "bucketbridge-seed"

// config returns a configuration acting in account and region.
func (s *seeder) config(ctx context.Context, account, region string) (aws.Config, error) {
	creds, ok := s.creds[account]
	if !ok {
		out, err := sts.NewFromConfig(s.base).AssumeRole(ctx, &sts.AssumeRoleInput{
			RoleArn:         aws.String("arn:aws:iam::" + account + ":role/" + seedRole),
			RoleSessionName: aws.String(seedRole),
		})
		if err != nil {
			return aws.Config{}, fmt.Errorf("assume role %s in account %s: %w", seedRole, account, err)
		}
		c := out.Credentials
		creds = credentials.NewStaticCredentialsProvider(aws.ToString(c.AccessKeyId), aws.ToString(c.SecretAccessKey), aws.ToString(c.SessionToken))
		s.creds[account] = creds
	}
	cfg := s.base.Copy()
	cfg.Region = region
	cfg.Credentials = creds
	return cfg, nil
}

// keyAlias names a demo key in moto, where its ID is made up.
func keyAlias(k awsfake.DemoKey) string { return "alias/bucketbridge-demo-" + k.Name }

// key finds the key by its alias, or creates it with its policy and names
// it. An existing key's policy is left alone: bucketbridge adds to it.
func (s *seeder) key(ctx context.Context, k awsfake.DemoKey) (string, error) {
	cfg, err := s.config(ctx, k.Account, k.Region)
	if err != nil {
		return "", err
	}
	c := kms.NewFromConfig(cfg)
	alias := keyAlias(k)
	found, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(alias)})
	if err == nil {
		return aws.ToString(found.KeyMetadata.Arn), nil
	}
	if _, ok := errors.AsType[*kmstypes.NotFoundException](err); !ok {
		return "", fmt.Errorf("describe key %s in %s: %w", alias, k.Account, err)
	}
	created, err := c.CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String(k.Description), Policy: aws.String(k.Policy)})
	if err != nil {
		return "", fmt.Errorf("create key %s in %s: %w", alias, k.Account, err)
	}
	id := aws.ToString(created.KeyMetadata.KeyId)
	_, err = c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String(alias), TargetKeyId: aws.String(id)})
	if _, ok := errors.AsType[*kmstypes.AlreadyExistsException](err); ok {
		// Another seeder named its key first: use that one, drop ours.
		if _, err := c.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: aws.String(id), PendingWindowInDays: aws.Int32(7)}); err != nil {
			return "", fmt.Errorf("schedule deletion of spare key %s: %w", id, err)
		}
		found, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(alias)})
		if err != nil {
			return "", fmt.Errorf("describe key %s in %s: %w", alias, k.Account, err)
		}
		return aws.ToString(found.KeyMetadata.Arn), nil
	}
	if err != nil {
		return "", fmt.Errorf("create alias %s in %s: %w", alias, k.Account, err)
	}
	s.log.InfoContext(ctx, "created key", "alias", alias, "arn", aws.ToString(created.KeyMetadata.Arn))
	return aws.ToString(created.KeyMetadata.Arn), nil
}

// bucket creates the bucket when it is missing and converges what
// bucketbridge never changes; a bucket policy is only put when there is
// none, and versioning is only ever enabled (bucketbridge may have enabled
// it on a bucket the world leaves unversioned).
func (s *seeder) bucket(ctx context.Context, b awsfake.DemoBucket, keyARN string) error {
	cfg, err := s.config(ctx, b.Account, b.Region)
	if err != nil {
		return err
	}
	c := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
	name, owner := aws.String(b.Name), aws.String(b.Account)

	_, err = c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: name, ExpectedBucketOwner: owner})
	if _, ok := errors.AsType[*s3types.NotFound](err); ok {
		in := &s3.CreateBucketInput{Bucket: name}
		if b.Region != "us-east-1" {
			in.CreateBucketConfiguration = &s3types.CreateBucketConfiguration{LocationConstraint: s3types.BucketLocationConstraint(b.Region)}
		}
		if _, err = c.CreateBucket(ctx, in); err == nil {
			s.log.InfoContext(ctx, "created bucket", "bucket", b.Name, "account", b.Account, "region", b.Region)
		} else {
			// Another seeder may have created it meanwhile.
			_, err = c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: name, ExpectedBucketOwner: owner})
		}
	}
	if err != nil {
		return fmt.Errorf("create bucket %s in %s: %w", b.Name, b.Account, err)
	}

	if b.ObjectOwnership != "" {
		got, err := c.GetBucketOwnershipControls(ctx, &s3.GetBucketOwnershipControlsInput{Bucket: name, ExpectedBucketOwner: owner})
		if err != nil && apiCode(err) != "OwnershipControlsNotFoundError" {
			return fmt.Errorf("get object ownership of %s: %w", b.Name, err)
		}
		if err != nil || len(got.OwnershipControls.Rules) != 1 || got.OwnershipControls.Rules[0].ObjectOwnership != b.ObjectOwnership {
			if _, err := c.PutBucketOwnershipControls(ctx, &s3.PutBucketOwnershipControlsInput{Bucket: name, ExpectedBucketOwner: owner,
				OwnershipControls: &s3types.OwnershipControls{Rules: []s3types.OwnershipControlsRule{{ObjectOwnership: b.ObjectOwnership}}}}); err != nil {
				return fmt.Errorf("put object ownership of %s: %w", b.Name, err)
			}
		}
	}

	if b.Versioning == s3types.BucketVersioningStatusEnabled {
		got, err := c.GetBucketVersioning(ctx, &s3.GetBucketVersioningInput{Bucket: name, ExpectedBucketOwner: owner})
		if err != nil {
			return fmt.Errorf("get versioning of %s: %w", b.Name, err)
		}
		if got.Status != s3types.BucketVersioningStatusEnabled {
			if _, err := c.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{Bucket: name, ExpectedBucketOwner: owner,
				VersioningConfiguration: &s3types.VersioningConfiguration{Status: s3types.BucketVersioningStatusEnabled}}); err != nil {
				return fmt.Errorf("enable versioning on %s: %w", b.Name, err)
			}
		}
	}

	want := s3types.ServerSideEncryptionByDefault{SSEAlgorithm: s3types.ServerSideEncryptionAes256}
	if keyARN != "" {
		want = s3types.ServerSideEncryptionByDefault{SSEAlgorithm: s3types.ServerSideEncryptionAwsKms, KMSMasterKeyID: aws.String(keyARN)}
	}
	enc, err := c.GetBucketEncryption(ctx, &s3.GetBucketEncryptionInput{Bucket: name, ExpectedBucketOwner: owner})
	if err != nil && apiCode(err) != "ServerSideEncryptionConfigurationNotFoundError" {
		return fmt.Errorf("get default encryption of %s: %w", b.Name, err)
	}
	if err != nil || !encryptedWith(enc.ServerSideEncryptionConfiguration, want) {
		if _, err := c.PutBucketEncryption(ctx, &s3.PutBucketEncryptionInput{Bucket: name, ExpectedBucketOwner: owner,
			ServerSideEncryptionConfiguration: &s3types.ServerSideEncryptionConfiguration{Rules: []s3types.ServerSideEncryptionRule{{
				ApplyServerSideEncryptionByDefault: &want, BucketKeyEnabled: aws.Bool(b.BucketKey),
			}}}}); err != nil {
			return fmt.Errorf("put default encryption of %s: %w", b.Name, err)
		}
	}

	if b.Policy != "" {
		_, err := c.GetBucketPolicy(ctx, &s3.GetBucketPolicyInput{Bucket: name, ExpectedBucketOwner: owner})
		if apiCode(err) == "NoSuchBucketPolicy" {
			_, err = c.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: name, ExpectedBucketOwner: owner, Policy: aws.String(b.Policy)})
		}
		if err != nil {
			return fmt.Errorf("seed the bucket policy of %s: %w", b.Name, err)
		}
	}
	return nil
}

// encryptedWith says whether the bucket's default encryption is want.
func encryptedWith(c *s3types.ServerSideEncryptionConfiguration, want s3types.ServerSideEncryptionByDefault) bool {
	if c == nil || len(c.Rules) != 1 || c.Rules[0].ApplyServerSideEncryptionByDefault == nil {
		return false
	}
	got := c.Rules[0].ApplyServerSideEncryptionByDefault
	return got.SSEAlgorithm == want.SSEAlgorithm && aws.ToString(got.KMSMasterKeyID) == aws.ToString(want.KMSMasterKeyID)
}

// apiCode is the AWS error code of err, or "" when it is not an API error.
func apiCode(err error) string {
	if ae, ok := errors.AsType[smithy.APIError](err); ok {
		return ae.ErrorCode()
	}
	return ""
}
