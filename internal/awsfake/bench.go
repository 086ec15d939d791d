package awsfake

import (
	"fmt"

	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// Buckets that SeedBench adds, numbered from 1.
const (
	// BenchSourcePrefix names the bench source buckets: versioned, in
	// DemoSourceAccount and DemoSourceRegion, encrypted by default with
	// DemoSourceKey and S3 Bucket Keys, like DemoSourceBucket.
	BenchSourcePrefix = "bench-source-"
	// BenchDestinationPrefix names the bench destination buckets:
	// versioned, in DemoDestinationAccount and DemoDestinationRegion,
	// bench-destination-i encrypted by default with BenchDestinationKey(i).
	BenchDestinationPrefix = "bench-destination-"
)

// BenchDestinationKey is the key of bench destination i. Each has its own,
// so that requests into distinct bench destinations share no document: a
// key policy shared by all would hold a statement per bucket, and KMS
// caps a key policy at 32 KB.
func BenchDestinationKey(i int) string {
	return "arn:aws:kms:" + DemoDestinationRegion + ":" + DemoDestinationAccount + ":key/" + benchKeyID(i)
}

func benchKeyID(i int) string { return fmt.Sprintf("bbbbbbbb-bbbb-4bbb-8bbb-%012d", i) }

// SeedBench adds n bench source buckets and n bench destination buckets to
// the demo world, so that benchmarks can run requests that share no
// document (one source and one destination each) or that share one.
func (c *Cloud) SeedBench(n int) error {
	for i := 1; i <= n; i++ {
		if err := c.AddBucket(DemoSourceAccount, DemoSourceRegion, fmt.Sprintf("%s%d", BenchSourcePrefix, i), BucketOptions{
			Versioning: s3types.BucketVersioningStatusEnabled, KMSKey: DemoSourceKey, BucketKey: true,
		}); err != nil {
			return fmt.Errorf("seed bench source %d: %w", i, err)
		}
		key := c.AddKey(DemoDestinationAccount, DemoDestinationRegion, KeyOptions{ID: benchKeyID(i), Description: fmt.Sprintf("bench destination %d", i)})
		if err := c.AddBucket(DemoDestinationAccount, DemoDestinationRegion, fmt.Sprintf("%s%d", BenchDestinationPrefix, i), BucketOptions{
			Versioning: s3types.BucketVersioningStatusEnabled, KMSKey: key,
		}); err != nil {
			return fmt.Errorf("seed bench destination %d: %w", i, err)
		}
	}
	return nil
}
