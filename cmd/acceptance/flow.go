package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/bucketbridge/bucketbridge/internal/policy"
)

// flow provisions two requests into the destination through the server,
// checks what they did, and deprovisions them: one from the source bucket
// whose default is SSE-KMS with its key, one from the SSE-S3 bucket with
// set_source_default_encryption. They share the destination's bucket and
// key policies.
func flow(ctx context.Context, s settings, w *world, srv *server, out io.Writer) error {
	verify := s.Endpoint == ""
	side := func(a *account, bucket, key string) map[string]any {
		return map[string]any{"account_id": a.account, "region": a.region, "bucket": bucket, "kms_key_arn": key}
	}
	requests := []map[string]any{
		{"source": side(w.a, w.x, w.keyA), "destination": side(w.b, w.y, w.keyB), "rule": map[string]any{"prefix": "acceptance/kms/"},
			"verify": verify, "ticket": "acceptance-" + w.id},
		{"source": side(w.a, w.x2, w.keyA), "destination": side(w.b, w.y, w.keyB), "rule": map[string]any{"prefix": "acceptance/sse-s3/"},
			"set_source_default_encryption": true, "verify": verify, "ticket": "acceptance-" + w.id},
	}
	var ids []string
	for _, body := range requests {
		status, r, err := srv.call(ctx, "POST", "/v1/replications", body)
		if err != nil {
			return err
		}
		if status != http.StatusAccepted {
			return fmt.Errorf("POST /v1/replications answered %d: %v", status, r)
		}
		id, _ := r["id"].(string)
		ids = append(ids, id)
		fmt.Fprintf(out, "requested %s: %s → %s\n", id, body["source"].(map[string]any)["bucket"], w.y)
	}
	var errs []error
	for _, id := range ids {
		r, err := srv.waitFor(ctx, id, "succeeded")
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if ws, _ := r["warnings"].([]any); len(ws) != 0 {
			errs = append(errs, fmt.Errorf("request %s succeeded with warnings, none expected: %v", id, ws))
		}
		fmt.Fprintf(out, "provisioned %s\n", id)
		if verify {
			if err := checkCanaries(ctx, srv, id, w.keyB); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := w.checkProvisioned(ctx, s); err != nil {
		return err
	}
	for _, id := range ids {
		status, r, err := srv.call(ctx, "DELETE", "/v1/replications/"+id, nil)
		if err != nil {
			return err
		}
		if status != http.StatusAccepted {
			return fmt.Errorf("DELETE %s answered %d: %v", id, status, r)
		}
	}
	for _, id := range ids {
		if _, err := srv.waitFor(ctx, id, "deprovisioned"); err != nil {
			return err
		}
		fmt.Fprintf(out, "deprovisioned %s\n", id)
	}
	return nil
}

// checkCanaries checks, in verify's record, that both canaries of a request
// replicated, and that their replicas are encrypted with the destination
// key: the one written without encryption headers too, since both source
// buckets default to SSE-KMS with the source key by then.
func checkCanaries(ctx context.Context, srv *server, id, keyB string) error {
	_, steps, err := srv.call(ctx, "GET", "/v1/replications/"+id+"/steps", nil)
	if err != nil {
		return err
	}
	items, _ := steps["items"].([]any)
	for _, it := range items {
		st, _ := it.(map[string]any)
		if st["name"] != "verify" || st["phase"] != "provision" {
			continue
		}
		b, _ := json.Marshal(st["after"])
		return canariesUnder(id, b, keyB)
	}
	return fmt.Errorf("request %s has no verify step", id)
}

// canariesUnder checks verify's record (after): both kinds of canary
// replicated, with replicas encrypted with keyB.
func canariesUnder(id string, after []byte, keyB string) error {
	var rec struct {
		Canaries []struct {
			Kind              string `json:"kind"`
			Status            string `json:"status"`
			ReplicaEncryption string `json:"replica_encryption"`
			ReplicaKMSKey     string `json:"replica_kms_key"`
		} `json:"canaries"`
	}
	if err := json.Unmarshal(after, &rec); err != nil {
		return fmt.Errorf("verify's record of %s: %w", id, err)
	}
	replicated := map[string]bool{}
	for _, c := range rec.Canaries {
		if c.Status != "COMPLETED" {
			continue
		}
		if !strings.HasPrefix(c.ReplicaEncryption, "aws:kms") || !sameKey(c.ReplicaKMSKey, keyB) {
			return fmt.Errorf("request %s: the replica of its %s canary is %s %s, not under %s", id, c.Kind, c.ReplicaEncryption, c.ReplicaKMSKey, keyB)
		}
		replicated[c.Kind] = true
	}
	if !replicated["sse-kms"] || !replicated["default-encryption"] {
		return fmt.Errorf("request %s: not both canaries replicated: %s", id, after)
	}
	return nil
}

// sameKey compares a key ID or ARN, as S3 reports it, with a key ARN.
func sameKey(got, arn string) bool {
	return got == arn || got != "" && strings.HasSuffix(arn, "/"+got)
}

// checkProvisioned checks what both requests share: the SSE-S3 bucket's
// default is the source key now, and the replication roles' trust policies
// carry the confused-deputy conditions when the run asked for them.
func (w *world) checkProvisioned(ctx context.Context, s settings) error {
	snap, err := w.snapshot(ctx)
	if err != nil {
		return err
	}
	if d := snap.Encryption[w.x2].Default(); snap.Encryption[w.x2] == nil || !d.IsKMS() {
		return fmt.Errorf("while provisioned, %s's default encryption is %s, not SSE-KMS with %s", w.x2, encString(snap.Encryption[w.x2]), w.keyA)
	}
	for _, b := range []string{w.x, w.x2} {
		role := policy.RoleName(b)
		r, err := w.a.iam.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(role)})
		if err != nil {
			return fmt.Errorf("get replication role %s: %w", role, err)
		}
		trust, err := policy.DecodeIAM(aws.ToString(r.Role.AssumeRolePolicyDocument))
		if err != nil {
			return err
		}
		has := strings.Contains(docString(&trust), "aws:SourceArn")
		if has != s.TrustConditions {
			return fmt.Errorf("role %s's trust policy %s: conditions %v, want %v", role, docString(&trust), has, s.TrustConditions)
		}
		if r.Role.PermissionsBoundary == nil || !strings.HasSuffix(aws.ToString(r.Role.PermissionsBoundary.PermissionsBoundaryArn), ":policy/"+w.boundary) {
			return fmt.Errorf("role %s has no permissions boundary %s", role, w.boundary)
		}
		if _, err := w.a.s3.GetBucketReplication(ctx, &s3.GetBucketReplicationInput{Bucket: aws.String(b)}); err != nil {
			return fmt.Errorf("read the replication of %s: %w", b, err)
		}
	}
	fmt.Fprintln(w.out, "while provisioned: the SSE-S3 bucket defaults to the source key, the roles carry the boundary and the expected trust conditions")
	return nil
}
