package store

// ListReplicationsSQL is the listing query, for the test of its plan.
const ListReplicationsSQL = listReplications
