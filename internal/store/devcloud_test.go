package store_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/bucketbridge/bucketbridge/internal/awsfake"
	"github.com/bucketbridge/bucketbridge/internal/store"
	"github.com/bucketbridge/bucketbridge/internal/store/storetest"
)

// restored is the world a server starting on the database would restore.
func restored(ctx context.Context, s *store.Store) (*awsfake.Cloud, error) {
	data, err := s.LoadDevCloud(ctx)
	if err != nil {
		return nil, err
	}
	if data == nil {
		return nil, errors.New("no dev cloud is saved")
	}
	var snap awsfake.Snapshot
	if err := json.Unmarshal(data, &snap); err != nil {
		return nil, err
	}
	c := awsfake.New()
	return c, c.Restore(&snap)
}

func TestDevCloudIsEmptyUntilSaved(t *testing.T) {
	t.Parallel()
	s := storetest.New(t)
	if data, err := s.LoadDevCloud(context.Background()); data != nil || err != nil {
		t.Fatalf("a new database holds a dev cloud: %q, %v", data, err)
	}
}

// Every change a call answered is in the database when the call returns,
// while many workers change the world at once; and what the database holds
// at the end restores to the same world.
func TestDevCloudKeepsEveryAnsweredChange(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := storetest.New(t)
	n := 0 // saves, fewer than changes when calls overlap
	var mu sync.Mutex
	cloud := awsfake.NewWithConfig(awsfake.Config{SaveFunc: func(ctx context.Context, snapshot []byte) error {
		mu.Lock()
		n++
		mu.Unlock()
		return s.SaveDevCloud(ctx, snapshot)
	}})
	cloud.SeedDemo("", "")
	if err := cloud.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	const workers, rounds = 8, 5
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds)
	for w := range workers {
		wg.Go(func() {
			iamA := cloud.IAM(awsfake.DemoSourceAccount)
			for r := range rounds {
				name := fmt.Sprintf("worker-%d-round-%d", w, r)
				if _, err := iamA.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(name),
					AssumeRolePolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"s3.amazonaws.com"},"Action":"sts:AssumeRole"}]}`)}); err != nil {
					errs <- err
					return
				}
				// What the call answered is what a restarted server finds.
				got, err := restored(ctx, s)
				if err != nil {
					errs <- err
					return
				}
				if _, err := got.IAM(awsfake.DemoSourceAccount).GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(name)}); err != nil {
					errs <- fmt.Errorf("role %s answered as created is not in the database: %w", name, err)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if _, err := cloud.S3(awsfake.DemoDestinationAccount, awsfake.DemoDestinationRegion).DeleteBucketPolicy(ctx,
		&s3.DeleteBucketPolicyInput{Bucket: aws.String(awsfake.DemoDestinationBucket)}); err != nil {
		t.Fatal(err)
	}
	back, err := restored(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	live, _ := json.Marshal(cloud.Snapshot())
	again, _ := json.Marshal(back.Snapshot())
	if !bytes.Equal(live, again) {
		t.Errorf("the world restored from the database differs from the live one:\nlive %s\nback %s", live, again)
	}
	mu.Lock()
	t.Logf("%d changing calls, %d saves", workers*rounds+1, n)
	mu.Unlock()
}

// BenchmarkSaveDevCloud is the cost of one save of the demo world, as
// every changing call of dev mode pays it (shared when calls overlap).
func BenchmarkSaveDevCloud(b *testing.B) {
	ctx := context.Background()
	s := storetest.New(b)
	data, err := json.Marshal(awsfake.NewDemo("", "").Snapshot())
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := s.SaveDevCloud(ctx, data); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(data)), "bytes/snapshot")
}

// BenchmarkDevCloudCall is a changing call of dev mode's in-memory AWS with
// its world kept in Postgres: the call answers once the save is done.
// In parallel, calls that overlap share saves.
func BenchmarkDevCloudCall(b *testing.B) {
	ctx := context.Background()
	s := storetest.New(b)
	for _, bc := range []struct {
		name string
		save func(context.Context, []byte) error
	}{{"memory", nil}, {"postgres", s.SaveDevCloud}} {
		newCloud := func() (*awsfake.Cloud, *s3.PutBucketPolicyInput) {
			c := awsfake.NewWithConfig(awsfake.Config{SaveFunc: bc.save})
			c.SeedDemo("", "")
			return c, &s3.PutBucketPolicyInput{Bucket: aws.String(awsfake.DemoDestinationBucket), Policy: aws.String(awsfake.DemoDestinationPolicy)}
		}
		b.Run(bc.name, func(b *testing.B) {
			c, in := newCloud()
			client := c.S3(awsfake.DemoDestinationAccount, awsfake.DemoDestinationRegion)
			for b.Loop() {
				if _, err := client.PutBucketPolicy(ctx, in); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(bc.name+"-parallel", func(b *testing.B) {
			c, in := newCloud()
			client := c.S3(awsfake.DemoDestinationAccount, awsfake.DemoDestinationRegion)
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := client.PutBucketPolicy(ctx, in); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
