package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
)

// identityTimeout bounds the start-up identity check. The SDK's default
// chain ends with the EC2 instance metadata service, which off EC2 may
// take seconds to fail; an STS that does not answer in this time would
// not serve the provisioner's AssumeRole calls either.
const identityTimeout = 15 * time.Second

// logIdentity resolves the service's own AWS identity from the SDK's
// default chain (as the worker pool will) and logs it, or says why it
// cannot.
func logIdentity(ctx context.Context, log *slog.Logger) error {
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return fmt.Errorf("load AWS configuration: %w", err)
	}
	arn, err := checkIdentity(ctx, cfg)
	if err != nil {
		return err
	}
	log.InfoContext(ctx, "aws identity", "arn", arn, "endpoint", cmp.Or(aws.ToString(cfg.BaseEndpoint), "(AWS)"))
	return nil
}

// checkIdentity resolves the service's own identity with sts
// GetCallerIdentity and returns its ARN. Without it a server with no
// usable credentials would start, and every request would retry its first
// step until the request deadline; so start-up fails instead, saying
// whether credentials are missing or refused.
func checkIdentity(ctx context.Context, cfg aws.Config) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, identityTimeout)
	defer cancel()
	if cfg.Credentials == nil {
		return "", errors.New("BB_CLOUD=aws: no AWS credentials provider is configured")
	}
	creds, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		return "", fmt.Errorf("BB_CLOUD=aws: no AWS credentials found: the SDK's default chain looked for "+
			"AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile (AWS_PROFILE) in the shared config and credentials files, "+
			"a web identity token (AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_ARN), and an ECS task or EC2 instance role: %w", err)
	}
	stsCfg := cfg.Copy()
	stsCfg.Region = cmp.Or(stsCfg.Region, "us-east-1")
	out, err := sts.NewFromConfig(stsCfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		at := "AWS STS"
		if cfg.BaseEndpoint != nil {
			at = "STS at " + *cfg.BaseEndpoint
		}
		if ae, ok := errors.AsType[smithy.APIError](err); ok && refused(err, ae) {
			return "", fmt.Errorf("BB_CLOUD=aws: %s refused the service's AWS credentials (from %s): %s: %s",
				at, creds.Source, ae.ErrorCode(), ae.ErrorMessage())
		}
		return "", fmt.Errorf("BB_CLOUD=aws: resolve the service's AWS identity with sts GetCallerIdentity at %s: %w", at, err)
	}
	return aws.ToString(out.Arn), nil
}

// refused says whether STS turned the credentials down (a 403, or one of
// the codes of AWS STS API Reference, "Common Errors", for credentials it
// does not accept), rather than failing for another reason such as
// throttling or an outage.
func refused(err error, ae smithy.APIError) bool {
	if re, ok := errors.AsType[*awshttp.ResponseError](err); ok && re.HTTPStatusCode() == 403 {
		return true
	}
	switch ae.ErrorCode() {
	case "InvalidClientTokenId", "SignatureDoesNotMatch", "ExpiredToken", "IncompleteSignature",
		"AccessDenied", "UnrecognizedClientException", "InvalidAccessKeyId", "MissingAuthenticationToken":
		return true
	}
	return false
}
