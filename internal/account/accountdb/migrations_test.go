package accountdb_test

import (
	"os"
	"testing"

	"github.com/globomantics/globomantics/internal/platform/outbox"
)

// TestOutboxMigrationsAreCopies: the store's outbox migrations are
// outbox.Migration and outbox.MigrationV2, byte for byte.
func TestOutboxMigrationsAreCopies(t *testing.T) {
	for file, want := range map[string]string{
		"migrations/00004_outbox.sql":    outbox.Migration,
		"migrations/00005_outbox_v2.sql": outbox.MigrationV2,
	} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != want {
			t.Errorf("%s differs from the outbox package's migration:\n%s", file, b)
		}
	}
}
