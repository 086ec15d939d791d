package store

import "time"

// ListReplicationsSQL is the listing query, for the test of its plan.
const ListReplicationsSQL = listReplications

// EventsChannel is the channel that announces new events.
const EventsChannel = eventsChannel

// SetClock makes s tell time with now; call it before s is used.
func SetClock(s *Store, now func() time.Time) { s.now = now }
