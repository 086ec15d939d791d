// Package awsfake is an in-memory, concurrency-safe AWS for bucketbridge's
// dev mode and tests: several accounts, each with STS, IAM, KMS and S3
// clients whose methods have the aws-sdk-go-v2 signatures, so that code
// written against small interfaces of *sts.Client, *iam.Client, *kms.Client
// and *s3.Client cannot tell the fake from the real thing.
//
// A Cloud holds the whole world. Clients act as an account (the service's
// own identity, or a role session obtained through AssumeRole):
//
//	c := awsfake.NewDemo("BucketbridgeProvisioner", "bucketbridge-dev")
//	out, err := c.STS("000000000000").AssumeRole(ctx, &sts.AssumeRoleInput{...})
//	cl, err := c.ClientsFor(*out.Credentials, "us-east-1")
//	cl.S3.GetBucketPolicy(ctx, &s3.GetBucketPolicyInput{Bucket: aws.String("demo-destination")})
//
// Errors are the SDK's own: typed errors where the SDK models them
// (*iamtypes.NoSuchEntityException, *kmstypes.NotFoundException,
// *s3types.NotFound, ...) and *smithy.GenericAPIError with AWS's code and
// message otherwise, wrapped the way the SDK wraps them
// (*smithy.OperationError around *awshttp.ResponseError carrying the HTTP
// status), so errors.As(err, &smithy.APIError) and the status code work.
//
// Beyond storing documents the fake
//   - validates what AWS validates where bucketbridge depends on it
//     (policy syntax, principals that exist, versioning before replication,
//     key policy lockout, AWS's size limits and quotas);
//   - keeps customer-managed policies with their versions and attachments,
//     and permissions boundaries, and counts both when it evaluates a role;
//   - shows a deleted role's unique ID (AROA…) in place of its ARN in every
//     bucket, key and trust policy, and refuses such a policy on put, as AWS
//     does;
//   - applies a bucket's default encryption (SSE-S3, or SSE-KMS with S3
//     Bucket Keys) to objects written without encryption headers, and
//     Object Lock (default retention, locked versions, replication rules);
//   - replicates objects put into a bucket with a matching replication rule,
//     asynchronously, and only when the documents in place grant every
//     permission S3 replication needs (see replicate.go); a FAILED object's
//     reason is available through Cloud.ReplicationFailure;
//   - injects faults per account and operation (latency, throttling, 5xx,
//     lost responses, IAM eventual consistency), see Faults.
//
// What the fake deliberately does differently from moto and from AWS is
// listed in the comments of conformance_test.go.
package awsfake
