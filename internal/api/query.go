package api

import (
	"fmt"
	"unicode/utf8"

	"github.com/bucketbridge/bucketbridge/internal/provision"
)

// maxTicketFilter is the longest ticket the listing filters by: no stored
// ticket is longer, so a longer one only costs the database a comparison.
const maxTicketFilter = 256

// ticketFilterProblem says what is wrong with the listing's ticket filter,
// or "".
func ticketFilterProblem(ticket string) string {
	switch {
	case provision.HasControl(ticket):
		return "must not contain control characters"
	case utf8.RuneCountInString(ticket) > maxTicketFilter:
		return fmt.Sprintf("must be at most %d characters", maxTicketFilter)
	}
	return ""
}
