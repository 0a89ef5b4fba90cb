package accountdb_test

import (
	"context"
	"testing"

	"github.com/globomantics/globomantics/internal/account"
	"github.com/globomantics/globomantics/internal/account/accountdb"
	"github.com/globomantics/globomantics/internal/account/sessiontest"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// TestSessionStore runs the session store conformance suite against the SQL
// store on SQLite and PostgreSQL, each on one node and split over two.
func TestSessionStore(t *testing.T) {
	for _, b := range testenv.ShardedBackends() {
		t.Run(b.Name, func(t *testing.T) {
			sessiontest.Run(t, func(t *testing.T) account.SessionStore {
				sh, _ := b.Open(t)
				s, err := accountdb.OpenSharded(context.Background(), sh)
				if err != nil {
					t.Fatal(err)
				}
				return s
			})
		})
	}
}
