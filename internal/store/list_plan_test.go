package store_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/bucketbridge/bucketbridge/internal/store"
	"github.com/bucketbridge/bucketbridge/internal/store/storetest"
)

// Filtering a listing by the caller's accounts must not cost the keyset
// walk: the query can still read replications_created in order from the
// cursor and stop after a page, with a plan made for its values or a
// generic one.
func TestListingByScopeCanWalkTheKeysetIndex(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, storetest.NewMigratedDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// An empty table is read whole by any sane planner; forbid that, and
	// sorting, to ask whether the ordered index can serve the query at all.
	if _, err := conn.Exec(ctx, `SET enable_seqscan = off; SET enable_sort = off; SET enable_bitmapscan = off`); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
		if _, err := conn.Exec(ctx, "SET plan_cache_mode = "+mode); err != nil {
			t.Fatal(err)
		}
		for name, args := range map[string][]any{
			"scoped, first page": {[]string{}, "", "", nil, nil, false, []string{"111111111111", "222222222222"}, 51},
			"scoped, next page": {[]string{}, "", "", "2026-01-01T00:00:00Z", "0190a4c6-0000-7000-8000-000000000000",
				false, []string{"111111111111"}, 51},
			"everything": {[]string{}, "", "", nil, nil, true, []string{}, 51},
		} {
			var plan []map[string]any
			if err := conn.QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+store.ListReplicationsSQL, args...).Scan(&plan); err != nil {
				t.Fatalf("%s %s: %v", mode, name, err)
			}
			b, _ := json.Marshal(plan)
			if !strings.Contains(string(b), `"Index Name":"replications_created"`) || strings.Contains(string(b), `"Node Type":"Sort"`) {
				t.Errorf("%s, %s: the listing does not walk replications_created in order:\n%s", mode, name, b)
			}
		}
	}
}
