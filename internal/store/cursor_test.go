package store_test

import (
	"context"
	"encoding/base64"
	"errors"
	"testing"

	"github.com/bucketbridge/bucketbridge/internal/provision"
	"github.com/bucketbridge/bucketbridge/internal/store/storetest"
)

// cursor spells a position the way the store does, so the test can forge
// positions a client could send.
func cursor(raw string) string { return base64.RawURLEncoding.EncodeToString([]byte(raw)) }

const someID = "0190a4c6-0000-7000-8000-000000000000"

func TestForgedCursorsAreRefusedBeforeTheyReachPostgres(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := storetest.New(t)
	for name, c := range map[string]string{
		"not base64":                      "not a cursor!",
		"no separator":                    cursor("1700000000000000"),
		"not a number":                    cursor("soon_" + someID),
		"not a uuid":                      cursor("1700000000000000_x"),
		"beyond int64":                    cursor("99999999999999999999_" + someID),
		"largest int64 (year 294247)":     cursor("9223372036854775807_" + someID),
		"smallest int64":                  cursor("-9223372036854775808_" + someID),
		"before 4713 BC (SQLSTATE 22008)": cursor("-300000000000000000_" + someID),
		"far before 4713 BC":              cursor("-9000000000000000000_" + someID),
		"year 10000":                      cursor("253402300800000000_" + someID),
		"before year 1":                   cursor("-62135596800000001_" + someID),
		"Postgres's upper bound exceeded": cursor("9214646400000000000_" + someID),
		"plus sign":                       cursor("+1700000000000000_" + someID),
		"leading zero":                    cursor("01700000000000000_" + someID),
		"uuid in braces":                  cursor("1700000000000000_{" + someID + "}"),
		"uuid without hyphens":            cursor("1700000000000000_0190a4c600007000800000000000000"),
		"uuid as urn":                     cursor("1700000000000000_urn:uuid:" + someID),
		"uppercase uuid":                  cursor("1700000000000000_0190A4C6-0000-7000-8000-000000000000"),
		"padded base64":                   cursor("1700000000000000_"+someID) + "==",
		"standard base64 alphabet":        base64.StdEncoding.EncodeToString([]byte("1700000000000000_" + someID + "??")),
		"newline inside":                  cursor("1700000000000000_" + someID)[:10] + "\n" + cursor("1700000000000000_" + someID)[10:],
		"empty after decoding":            cursor("_"),
	} {
		_, err := s.List(ctx, provision.Filter{Limit: 5, After: c})
		if !errors.Is(err, provision.ErrBadCursor) {
			t.Errorf("%s (%q): %v, want ErrBadCursor", name, c, err)
		}
	}
}

func TestEveryCursorTheStoreAcceptsIsAPositionPostgresCanHold(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := storetest.New(t)
	for name, c := range map[string]string{
		"first instant of year 1":    cursor("-62135596800000000_" + someID),
		"last instant of 9999":       cursor("253402300799999999_" + someID),
		"the Unix epoch":             cursor("0_" + someID),
		"an ordinary one":            cursor("1700000000000000_" + someID),
		"nil uuid":                   cursor("1700000000000000_00000000-0000-0000-0000-000000000000"),
		"negative, before the epoch": cursor("-1_" + someID),
	} {
		if _, err := s.List(ctx, provision.Filter{Limit: 5, After: c}); err != nil {
			t.Errorf("%s (%q): %v, want an empty page", name, c, err)
		}
	}
}
