package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/bucketbridge/bucketbridge/internal/awsfake"
)

// motoURL is the moto the tests seed into; it must be running.
func motoURL(t *testing.T) string {
	t.Helper()
	endpoint := cmp.Or(os.Getenv("MOTO_URL"), "http://127.0.0.1:5000")
	resp, err := (&http.Client{Timeout: 3 * time.Second}).Get(endpoint + "/moto-api/")
	if err != nil {
		t.Fatalf("moto does not answer at %s (%v): start it with scripts/ensure-moto.sh, or point MOTO_URL at a running moto", endpoint, err)
	}
	resp.Body.Close()
	return endpoint
}

// privateWorld is the demo world moved into fresh accounts and bucket
// names, so that tests running at once, and a developer's own seeded
// world in the same moto, never meet.
func privateWorld() awsfake.DemoWorld {
	w := awsfake.Demo()
	accounts, names := map[string]string{}, map[string]string{}
	var pairs []string
	for _, a := range w.Accounts {
		accounts[a] = fmt.Sprintf("7%011d", rand.Int64N(1e11))
		// Account IDs stand between colons in ARNs (a key ID may end in
		// the same digits).
		pairs = append(pairs, ":"+a+":", ":"+accounts[a]+":")
	}
	suffix := fmt.Sprintf("-%08x", rand.Uint32())
	for _, b := range w.Buckets {
		names[b.Name] = b.Name + suffix
		pairs = append(pairs, ":::"+b.Name+`"`, ":::"+names[b.Name]+`"`, ":::"+b.Name+"/", ":::"+names[b.Name]+"/")
	}
	r := strings.NewReplacer(pairs...)
	out := awsfake.DemoWorld{ServiceAccount: w.ServiceAccount}
	for _, a := range w.Accounts {
		out.Accounts = append(out.Accounts, accounts[a])
	}
	keyARNs := map[string]string{}
	for _, k := range w.Keys {
		old := k.ARN()
		k.Account, k.Policy = accounts[k.Account], r.Replace(k.Policy)
		keyARNs[old] = k.ARN()
		out.Keys = append(out.Keys, k)
	}
	for _, b := range w.Buckets {
		b.Account, b.Name, b.KMSKey, b.Policy = accounts[b.Account], names[b.Name], keyARNs[b.KMSKey], r.Replace(b.Policy)
		out.Buckets = append(out.Buckets, b)
	}
	return out
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestSeedCreatesTheDemoWorld seeds the demo world into moto with several
// seeders at once and then once more, and reads every bucket and key back
// through the SDK: all of them agree on the keys, and the world is the one
// dev mode holds.
func TestSeedCreatesTheDemoWorld(t *testing.T) {
	t.Parallel()
	base := motoConfig(motoURL(t))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	w := privateWorld()

	const seeders = 4
	results := make([]map[string]string, seeders)
	errs := make([]error, seeders)
	var wg sync.WaitGroup
	for i := range seeders {
		wg.Go(func() { results[i], errs[i] = seed(ctx, base, w, quietLog()) })
	}
	wg.Wait()
	for i := range seeders {
		if errs[i] != nil {
			t.Fatalf("seeder %d: %v", i, errs[i])
		}
		if !reflect.DeepEqual(results[i], results[0]) {
			t.Fatalf("seeders disagree on the keys: %v and %v", results[0], results[i])
		}
	}
	again, err := seed(ctx, base, w, quietLog())
	if err != nil {
		t.Fatalf("seed again: %v", err)
	}
	if !reflect.DeepEqual(again, results[0]) {
		t.Fatalf("seeding again changed the keys: %v, then %v", results[0], again)
	}
	checkWorld(t, ctx, base, w, again)
}

// checkWorld reads w back from moto: keys (by their moto ARN) with their
// policies, buckets in their accounts and regions with versioning, default
// encryption, object ownership and bucket policy.
func checkWorld(t *testing.T, ctx context.Context, base aws.Config, w awsfake.DemoWorld, keys map[string]string) {
	t.Helper()
	s := &seeder{base: base, log: quietLog(), creds: map[string]aws.CredentialsProvider{}}
	keyARN := regexp.MustCompile(`^arn:aws:kms:([a-z0-9-]+):(\d{12}):key/[0-9a-f-]{36}$`)
	for _, k := range w.Keys {
		arn := keys[k.ARN()]
		if m := keyARN.FindStringSubmatch(arn); m == nil || m[1] != k.Region || m[2] != k.Account {
			t.Errorf("key %s is %q in moto, want a key ARN in %s, %s", k.Name, arn, k.Region, k.Account)
			continue
		}
		cfg, err := s.config(ctx, k.Account, k.Region)
		if err != nil {
			t.Fatal(err)
		}
		c := kms.NewFromConfig(cfg)
		d, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(arn)})
		if err != nil {
			t.Fatalf("describe key %s: %v", arn, err)
		}
		if m := d.KeyMetadata; m.KeyState != kmstypes.KeyStateEnabled || m.KeyManager != kmstypes.KeyManagerTypeCustomer || aws.ToString(m.Description) != k.Description {
			t.Errorf("key %s: state %s, manager %s, description %q; want an enabled customer-managed key %q", arn, m.KeyState, m.KeyManager, aws.ToString(m.Description), k.Description)
		}
		p, err := c.GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: aws.String(arn), PolicyName: aws.String("default")})
		if err != nil {
			t.Fatalf("get key policy of %s: %v", arn, err)
		}
		checkJSON(t, "key policy of "+arn, aws.ToString(p.Policy), k.Policy)
	}
	for _, b := range w.Buckets {
		cfg, err := s.config(ctx, b.Account, b.Region)
		if err != nil {
			t.Fatal(err)
		}
		c := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
		name := aws.String(b.Name)
		loc, err := c.GetBucketLocation(ctx, &s3.GetBucketLocationInput{Bucket: name, ExpectedBucketOwner: aws.String(b.Account)})
		if err != nil {
			t.Fatalf("get location of %s: %v", b.Name, err)
		}
		if got := cmp.Or(string(loc.LocationConstraint), "us-east-1"); got != b.Region {
			t.Errorf("bucket %s is in %s, want %s", b.Name, got, b.Region)
		}
		v, err := c.GetBucketVersioning(ctx, &s3.GetBucketVersioningInput{Bucket: name})
		if err != nil {
			t.Fatalf("get versioning of %s: %v", b.Name, err)
		}
		if v.Status != b.Versioning {
			t.Errorf("bucket %s: versioning %q, want %q", b.Name, v.Status, b.Versioning)
		}
		want := s3types.ServerSideEncryptionByDefault{SSEAlgorithm: s3types.ServerSideEncryptionAes256}
		if b.KMSKey != "" {
			want = s3types.ServerSideEncryptionByDefault{SSEAlgorithm: s3types.ServerSideEncryptionAwsKms, KMSMasterKeyID: aws.String(keys[b.KMSKey])}
		}
		enc, err := c.GetBucketEncryption(ctx, &s3.GetBucketEncryptionInput{Bucket: name})
		if err != nil {
			t.Fatalf("get default encryption of %s: %v", b.Name, err)
		}
		if !encryptedWith(enc.ServerSideEncryptionConfiguration, want) {
			got, _ := json.Marshal(enc.ServerSideEncryptionConfiguration)
			t.Errorf("bucket %s: default encryption %s, want %s with %s", b.Name, got, want.SSEAlgorithm, aws.ToString(want.KMSMasterKeyID))
		}
		oc, err := c.GetBucketOwnershipControls(ctx, &s3.GetBucketOwnershipControlsInput{Bucket: name})
		if err != nil {
			t.Fatalf("get object ownership of %s: %v", b.Name, err)
		}
		if r := oc.OwnershipControls.Rules; len(r) != 1 || r[0].ObjectOwnership != b.ObjectOwnership {
			t.Errorf("bucket %s: object ownership %+v, want %s", b.Name, r, b.ObjectOwnership)
		}
		p, err := c.GetBucketPolicy(ctx, &s3.GetBucketPolicyInput{Bucket: name})
		switch {
		case b.Policy == "" && apiCode(err) != "NoSuchBucketPolicy":
			t.Errorf("bucket %s: policy %v (%v), want none", b.Name, p, err)
		case b.Policy != "" && err != nil:
			t.Errorf("bucket %s: get policy: %v", b.Name, err)
		case b.Policy != "":
			checkJSON(t, "bucket policy of "+b.Name, aws.ToString(p.Policy), b.Policy)
		}
	}
}

// TestSeedKeepsWhatTheServerProvisioned seeds a world, changes it as
// provisioning does (a statement added to the destination's bucket and key
// policies, versioning enabled on the unversioned bucket) and seeds again:
// those changes survive, so re-running `make run-moto` never breaks
// requests that already succeeded.
func TestSeedKeepsWhatTheServerProvisioned(t *testing.T) {
	t.Parallel()
	base := motoConfig(motoURL(t))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	w := privateWorld()
	keys, err := seed(ctx, base, w, quietLog())
	if err != nil {
		t.Fatal(err)
	}

	var dst, unversioned awsfake.DemoBucket
	for _, b := range w.Buckets {
		switch {
		case b.Policy != "":
			dst = b
		case b.Versioning == "":
			unversioned = b
		}
	}
	dstKey := keys[dst.KMSKey]
	s := &seeder{base: base, log: quietLog(), creds: map[string]aws.CredentialsProvider{}}
	cfg, err := s.config(ctx, dst.Account, dst.Region)
	if err != nil {
		t.Fatal(err)
	}
	s3c := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
	kmsc := kms.NewFromConfig(cfg)
	added := `{"Sid":"BucketbridgeReplicaBucket","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::` + w.Accounts[0] +
		`:role/bucketbridge-x"},"Action":["s3:GetBucketVersioning"],"Resource":"arn:aws:s3:::` + dst.Name + `"}`
	bucketPolicy := strings.TrimSuffix(dst.Policy, "]}") + "," + added + "]}"
	if _, err := s3c.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String(dst.Name), Policy: aws.String(bucketPolicy)}); err != nil {
		t.Fatal(err)
	}
	var keyPolicy string
	for _, k := range w.Keys {
		if k.ARN() == dst.KMSKey {
			keyPolicy = strings.TrimSuffix(k.Policy, "]}") + "," + strings.Replace(added, `"Resource":"arn:aws:s3:::`+dst.Name+`"`, `"Resource":"*"`, 1) + "]}"
		}
	}
	if _, err := kmsc.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: aws.String(dstKey), PolicyName: aws.String("default"), Policy: aws.String(keyPolicy)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s3c.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{Bucket: aws.String(unversioned.Name),
		VersioningConfiguration: &s3types.VersioningConfiguration{Status: s3types.BucketVersioningStatusEnabled}}); err != nil {
		t.Fatal(err)
	}

	again, err := seed(ctx, base, w, quietLog())
	if err != nil {
		t.Fatalf("seed again: %v", err)
	}
	if !reflect.DeepEqual(again, keys) {
		t.Errorf("seeding again changed the keys: %v, then %v", keys, again)
	}
	p, err := s3c.GetBucketPolicy(ctx, &s3.GetBucketPolicyInput{Bucket: aws.String(dst.Name)})
	if err != nil {
		t.Fatal(err)
	}
	checkJSON(t, "bucket policy of "+dst.Name, aws.ToString(p.Policy), bucketPolicy)
	kp, err := kmsc.GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: aws.String(dstKey), PolicyName: aws.String("default")})
	if err != nil {
		t.Fatal(err)
	}
	checkJSON(t, "key policy of "+dstKey, aws.ToString(kp.Policy), keyPolicy)
	v, err := s3c.GetBucketVersioning(ctx, &s3.GetBucketVersioningInput{Bucket: aws.String(unversioned.Name)})
	if err != nil {
		t.Fatal(err)
	}
	if v.Status != s3types.BucketVersioningStatusEnabled {
		t.Errorf("versioning on %s is %q after seeding again, want it left Enabled", unversioned.Name, v.Status)
	}
}

// TestRunPrintsTheDemoKeys runs the command as `make run-moto` does, twice,
// against the real demo world: it prints one DEMO_<NAME>_KEY line per demo
// key, in the demo accounts and regions, the same both times.
func TestRunPrintsTheDemoKeys(t *testing.T) {
	t.Parallel()
	endpoint := motoURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var outs [2]string
	for i := range outs {
		var stdout, stderr bytes.Buffer
		if err := run(ctx, []string{"-endpoint", endpoint}, func(string) string { return "" }, &stdout, &stderr); err != nil {
			t.Fatalf("run: %v\n%s", err, stderr.String())
		}
		outs[i] = stdout.String()
	}
	if outs[0] != outs[1] {
		t.Errorf("second run printed\n%s\nafter\n%s", outs[1], outs[0])
	}
	src := `arn:aws:kms:` + awsfake.DemoSourceRegion + `:` + awsfake.DemoSourceAccount + `:key/[0-9a-f-]{36}\n`
	want := regexp.MustCompile(`^DEMO_SOURCE_KEY=` + src + `DEMO_SOURCE_OTHER_KEY=` + src +
		`DEMO_DESTINATION_KEY=arn:aws:kms:` + awsfake.DemoDestinationRegion + `:` + awsfake.DemoDestinationAccount + `:key/[0-9a-f-]{36}\n$`)
	if !want.MatchString(outs[0]) {
		t.Errorf("run printed\n%s\nwant a line per demo key", outs[0])
	}
}

// TestRunRefusesWhatIsNotMoto: an endpoint that does not answer moto's own
// API (real AWS, a typo) is refused before anything is created.
func TestRunRefusesWhatIsNotMoto(t *testing.T) {
	t.Parallel()
	notMoto := "http://" + freeAddr(t)
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"-endpoint", notMoto, "-wait", "500ms"}, func(string) string { return "" }, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "does not answer as moto") {
		t.Errorf("run against %s = %v, want an error saying it does not answer as moto", notMoto, err)
	}
	if stdout.Len() != 0 {
		t.Errorf("run printed %q", stdout.String())
	}
}

func checkJSON(t *testing.T, what, got, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("%s: %v in %s", what, err, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("%s: %v in the wanted %s", what, err, want)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s is\n%s\nwant\n%s", what, got, want)
	}
}

// freeAddr is a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
