// Command acceptance runs bucketbridge's whole flow against real AWS, in two
// accounts named by two AWS CLI profiles (BB_ACCEPTANCE_SOURCE_PROFILE and
// BB_ACCEPTANCE_DESTINATION_PROFILE):
//
//  1. in each account, a provisioner role with exactly the policies of
//     docs/PROVISIONER.md (and, in the source account, the documented
//     permissions boundary, which the run sets as
//     BB_ROLE_PERMISSIONS_BOUNDARY);
//  2. a customer-managed key and versioned buckets in each: a source bucket
//     whose default encryption is SSE-KMS with its key, a second one whose
//     default is SSE-S3, and a destination bucket whose policy holds a
//     statement of someone else's;
//  3. a real server (go build ./cmd/server, run with BB_CLOUD=aws and the
//     source profile as its own identity, on a database of its own)
//     provisions two requests into the destination, one of them with
//     set_source_default_encryption, each verified with real canaries;
//  4. both are deprovisioned, and every document is compared with what it
//     was before: the destination's bucket and key policies, the source
//     key's policy, the source buckets' replication configurations and
//     default encryption; no role, managed policy or canary is left;
//  5. everything the run created is deleted (the keys are scheduled for
//     deletion after KMS's minimum of 7 days).
//
// Without both profiles it says what it needs and exits 0, claiming
// nothing. With BB_ACCEPTANCE_ENDPOINT it rehearses the run against an
// emulator such as moto instead (requests without verify, since emulators do
// not replicate), which proves nothing about AWS.
package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "acceptance: FAILED:", err)
		os.Exit(1)
	}
}

// settings are the run's environment.
type settings struct {
	SourceProfile      string
	DestinationProfile string
	SourceRegion       string
	DestinationRegion  string
	// TrustConditions runs the server with BB_TRUST_CONDITIONS, so that the
	// canaries prove S3 assumes a role whose trust policy has them.
	TrustConditions bool
	// Endpoint rehearses the run against an emulator.
	Endpoint    string
	DatabaseURL string
	// ProvisionerDoc is docs/PROVISIONER.md.
	ProvisionerDoc string
	// Timeout bounds the whole run before cleanup.
	Timeout time.Duration
}

// needs is what the run says when it cannot run.
const needs = `make acceptance runs bucketbridge's whole flow against real AWS. It needs two
AWS CLI profiles, in two different accounts:

  BB_ACCEPTANCE_SOURCE_PROFILE       the source account; also the identity the
                                     server runs as
  BB_ACCEPTANCE_DESTINATION_PROFILE  the destination account

Each must be allowed to create and delete S3 buckets, KMS keys (and schedule
their deletion), and IAM roles and policies in its account, and the source
profile to sts:AssumeRole roles of both accounts. Optional:
BB_ACCEPTANCE_SOURCE_REGION (us-east-1), BB_ACCEPTANCE_DESTINATION_REGION
(us-west-2), BB_ACCEPTANCE_TRUST_CONDITIONS (true), BB_ACCEPTANCE_TIMEOUT
(45m), DATABASE_URL (the local Postgres of make test).

NOT RUN: nothing was created, nothing was checked, nothing is claimed.
`

func readSettings(getenv func(string) string) (settings, error) {
	s := settings{
		SourceProfile:      getenv("BB_ACCEPTANCE_SOURCE_PROFILE"),
		DestinationProfile: getenv("BB_ACCEPTANCE_DESTINATION_PROFILE"),
		SourceRegion:       cmp.Or(getenv("BB_ACCEPTANCE_SOURCE_REGION"), "us-east-1"),
		DestinationRegion:  cmp.Or(getenv("BB_ACCEPTANCE_DESTINATION_REGION"), "us-west-2"),
		Endpoint:           getenv("BB_ACCEPTANCE_ENDPOINT"),
		DatabaseURL:        cmp.Or(getenv("DATABASE_URL"), "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"),
		ProvisionerDoc:     cmp.Or(getenv("BB_ACCEPTANCE_PROVISIONER_DOC"), "docs/PROVISIONER.md"),
	}
	var errs []error
	var err error
	if s.TrustConditions, err = strconv.ParseBool(cmp.Or(getenv("BB_ACCEPTANCE_TRUST_CONDITIONS"), "true")); err != nil {
		errs = append(errs, fmt.Errorf("BB_ACCEPTANCE_TRUST_CONDITIONS: want true or false: %w", err))
	}
	if s.Timeout, err = time.ParseDuration(cmp.Or(getenv("BB_ACCEPTANCE_TIMEOUT"), "45m")); err != nil {
		errs = append(errs, fmt.Errorf("BB_ACCEPTANCE_TIMEOUT: want a duration such as 45m: %w", err))
	}
	return s, errors.Join(errs...)
}

// run is the whole acceptance run; it reports on out as it goes. A run whose
// cleanup leaves something behind fails, even when everything else passed.
func run(ctx context.Context, getenv func(string) string, out io.Writer) (err error) {
	s, err := readSettings(getenv)
	if err != nil {
		return err
	}
	if s.SourceProfile == "" || s.DestinationProfile == "" {
		fmt.Fprint(out, needs)
		return nil
	}
	if s.Endpoint != "" {
		fmt.Fprintf(out, "REHEARSAL against %s: requests run without verify, and nothing this run shows is true of AWS.\n", s.Endpoint)
	}
	docs, err := readProvisionerDocs(s.ProvisionerDoc)
	if err != nil {
		return err
	}
	w, err := newWorld(ctx, s, out)
	if err != nil {
		return err
	}
	// Whatever happens, what the run created is deleted, with time of its own.
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
		defer cancel()
		if cerr := w.cleanup(cctx); cerr != nil {
			fmt.Fprintf(out, "cleanup: %v\nDelete what is left by hand: %s\n", cerr, w.inventory())
			err = errors.Join(err, fmt.Errorf("cleanup left resources behind: %w", cerr))
		} else {
			fmt.Fprintln(out, "cleanup: everything the run created is deleted (its keys are scheduled for deletion in 7 days)")
		}
	}()
	rctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	if err := w.createProvisioners(rctx, docs); err != nil {
		return err
	}
	if err := w.createSides(rctx); err != nil {
		return err
	}
	before, err := w.snapshot(rctx)
	if err != nil {
		return fmt.Errorf("read the documents before: %w", err)
	}
	srv, err := startServer(rctx, s, w, out)
	if err != nil {
		return err
	}
	defer srv.stop()
	if err := flow(rctx, s, w, srv, out); err != nil {
		return err
	}
	after, err := w.snapshot(rctx)
	if err != nil {
		return fmt.Errorf("read the documents after: %w", err)
	}
	if diffs := before.differences(after); len(diffs) > 0 {
		return fmt.Errorf("after deprovisioning, documents differ from before:\n  %s", joinLines(diffs))
	}
	fmt.Fprintln(out, "every document is back to what it was before; no role, managed policy or canary is left")
	if s.Endpoint != "" {
		fmt.Fprintln(out, "REHEARSAL PASSED: the run's own steps work against the emulator; nothing about AWS is shown")
		return nil
	}
	fmt.Fprintf(out, "PASSED against AWS (accounts %s and %s)", w.a.account, w.b.account)
	if s.TrustConditions {
		fmt.Fprint(out, ", with BB_TRUST_CONDITIONS=true: S3 assumed replication roles whose trust policies carry aws:SourceAccount and aws:SourceArn")
	}
	fmt.Fprintln(out)
	return nil
}

func joinLines(lines []string) string {
	out := ""
	for i, l := range lines {
		if i > 0 {
			out += "\n  "
		}
		out += l
	}
	return out
}
