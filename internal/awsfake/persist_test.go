package awsfake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// database stands for where a SaveFunc keeps the world: the roles of the
// source account in the last snapshot saved, and how many saves there were.
type database struct {
	mu    sync.Mutex
	roles map[string]bool
	last  []byte
	saves int
	// fail, when set, makes saves fail with it.
	fail error
}

func (d *database) save(_ context.Context, snapshot []byte) error {
	var s Snapshot
	if err := json.Unmarshal(snapshot, &s); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fail != nil {
		return d.fail
	}
	d.saves++
	d.last = snapshot
	d.roles = map[string]bool{}
	for _, a := range s.Accounts {
		if a.ID == DemoSourceAccount {
			for _, r := range a.Roles {
				d.roles[r.Name] = true
			}
		}
	}
	return nil
}

func (d *database) has(role string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.roles[role]
}

const trustAnyS3 = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"s3.amazonaws.com"},"Action":"sts:AssumeRole"}]}`

// No call answers before the world as it left it, or as it found it, is
// saved, while many workers create, read and delete roles at once: a
// server that crashed and restored what was saved would never find less
// than a call answered.
func TestNoAnswerBeforeItsWorldIsSaved(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := &database{}
	c := NewWithConfig(Config{SaveFunc: db.save})
	c.SeedDemo("", "")
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	const workers, rounds = 12, 20
	name := func(w, r int) string { return fmt.Sprintf("w%d-r%d", w, r) }
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds*3)
	for w := range workers {
		wg.Go(func() {
			m := c.IAM(DemoSourceAccount)
			for r := range rounds {
				if _, err := m.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(name(w, r)), AssumeRolePolicyDocument: aws.String(trustAnyS3)}); err != nil {
					errs <- err
					return
				}
				if !db.has(name(w, r)) {
					errs <- fmt.Errorf("CreateRole %s answered before the role was saved", name(w, r))
				}
				// A role another worker created that a read finds is saved
				// (one of an even round, which is never deleted).
				other := name((w+1)%workers, r&^1)
				if _, err := m.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(other)}); err == nil && !db.has(other) {
					errs <- fmt.Errorf("GetRole found %s before it was saved", other)
				}
				if r%2 == 1 {
					if _, err := m.DeleteRole(ctx, &iam.DeleteRoleInput{RoleName: aws.String(name(w, r))}); err != nil {
						errs <- err
						return
					}
					if db.has(name(w, r)) {
						errs <- fmt.Errorf("DeleteRole %s answered before the deletion was saved", name(w, r))
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d changing calls, %d saves", workers*rounds*3/2, db.saves)
}

// A call whose world could not be saved fails (its change may or may not
// have happened, as after a lost response) and the next one saves it.
func TestAFailedSaveFailsTheCall(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := &database{}
	c := NewWithConfig(Config{SaveFunc: db.save})
	c.SeedDemo("", "")
	down := errors.New("database is down")
	db.mu.Lock()
	db.fail = down
	db.mu.Unlock()
	_, err := c.IAM(DemoSourceAccount).CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("r"), AssumeRolePolicyDocument: aws.String(trustAnyS3)})
	if !errors.Is(err, down) {
		t.Fatalf("CreateRole while saves fail = %v, want the save's error", err)
	}
	db.mu.Lock()
	db.fail = nil
	db.mu.Unlock()
	if _, err := c.IAM(DemoSourceAccount).GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String("r")}); err != nil {
		t.Fatalf("GetRole after the database is back: %v", err)
	}
	if !db.has("r") {
		t.Error("the role the read found is not saved")
	}
}

// A caller who gives up while a save is slow gets its answer at once; the
// save goes on for the others.
func TestACancelledCallDoesNotWaitForTheSave(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	db := &database{}
	c := NewWithConfig(Config{SaveFunc: func(ctx context.Context, snapshot []byte) error {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release
		return db.save(ctx, snapshot)
	}})
	c.SeedDemo("", "")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.S3(DemoSourceAccount, DemoSourceRegion).PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{Bucket: aws.String(DemoSourceSSES3Bucket),
			VersioningConfiguration: &s3types.VersioningConfiguration{Status: s3types.BucketVersioningStatusSuspended}})
		done <- err
	}()
	<-entered
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled call = %v, want context.Canceled", err)
	}
	close(release)
	if err := c.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(db.last), `"versioning":"Suspended"`) {
		t.Errorf("the change of the cancelled call is not saved: %s", db.last)
	}
}

// A replication decided in the background, with nobody waiting, is saved
// too.
func TestABackgroundReplicationIsSaved(t *testing.T) {
	t.Parallel()
	db := &database{}
	c := NewWithConfig(Config{SaveFunc: db.save, ReplicationDelay: time.Millisecond})
	richWorld(t, c)
	v := putCanary(t, c, "bucketbridge-canary/background")
	deadline := time.Now().Add(10 * time.Second)
	for {
		db.mu.Lock()
		last := string(db.last)
		db.mu.Unlock()
		if strings.Contains(last, `"key":"bucketbridge-canary/background","version_id":"`+v+`"`) && !strings.Contains(last, `"pending":[{`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the decided replication is not saved by the deadline: %s", last)
		}
		time.Sleep(time.Millisecond)
	}
}

// BenchmarkCall is what keeping the world adds to a changing call of the
// demo world, beside the SaveFunc's own cost (here none): the snapshot and
// its JSON.
func BenchmarkCall(b *testing.B) {
	ctx := context.Background()
	for _, bc := range []struct {
		name string
		save func(context.Context, []byte) error
	}{
		{"memory", nil},
		{"saved", func(context.Context, []byte) error { return nil }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := NewWithConfig(Config{SaveFunc: bc.save})
			c.SeedDemo("", "")
			s := c.S3(DemoDestinationAccount, DemoDestinationRegion)
			in := &s3.PutBucketPolicyInput{Bucket: aws.String(DemoDestinationBucket), Policy: aws.String(DemoDestinationPolicy)}
			for b.Loop() {
				if _, err := s.PutBucketPolicy(ctx, in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
