package cartdb

// Digest exposes digest to the tests, which forge the state a pair update
// across nodes leaves when it stops between its two commits.
var Digest = digest
