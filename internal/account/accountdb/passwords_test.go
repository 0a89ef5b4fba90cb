package accountdb_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/account"
	"github.com/globomantics/globomantics/internal/account/accountdb"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// TestPasswordResets runs the store's password operations over one node and
// two: a reset link's row and its e-mail job land on the account's node, in
// one transaction; a link is usable once, until it expires, and not by
// another account; using it sets the hash and voids the account's other
// links; a password change voids them too; of two uses at once exactly one
// wins; and DeleteExpiredSessions purges links a day past their expiry.
func TestPasswordResets(t *testing.T) {
	ctx := context.Background()
	for _, b := range testenv.ShardedBackends() {
		t.Run(b.Name, func(t *testing.T) {
			sh, nodes := b.Open(t)
			s, err := accountdb.OpenSharded(ctx, sh)
			if err != nil {
				t.Fatal(err)
			}
			m := sh.Map()
			nodeA, nodeB := testenv.FirstAndLast(sh)
			idA := testenv.KeyOnNode(t, m, nodeA, "acc_pa")
			idB := testenv.KeyOnNode(t, m, nodeB, "acc_pb")
			for _, id := range []string{idA, idB} {
				if err := s.CreateAccount(ctx, stored(id, id+"@example.com", id)); err != nil {
					t.Fatal(err)
				}
			}
			count := counter(ctx, t, nodes)
			reset := func(id, acc string, created time.Time) account.PasswordReset {
				t.Helper()
				r := account.PasswordReset{ID: id, AccountID: acc, CreatedAt: created, ExpiresAt: created.Add(account.ResetTTL)}
				job := account.PasswordResetRequested{ResetID: id, To: acc + "@example.com", Name: acc, Token: "tok-" + id,
					ExpiresAt: r.ExpiresAt, RequestedAt: created}
				if err := s.CreatePasswordReset(ctx, r, job); err != nil {
					t.Fatalf("CreatePasswordReset(%s): %v", id, err)
				}
				return r
			}

			reset("r1", idA, t0)
			reset("r2", idA, t0)
			reset("r3", idB, t0)
			if nodeA != nodeB {
				if n := count(nodeA, `SELECT COUNT(*) FROM password_resets WHERE account_id = ?`, idA); n != 2 {
					t.Errorf("node of A holds %d of A's links, want 2", n)
				}
				if n := count(nodeB, `SELECT COUNT(*) FROM password_resets WHERE account_id = ?`, idA); n != 0 {
					t.Errorf("node of B holds %d of A's links", n)
				}
			}
			if n := count(nodeA, `SELECT COUNT(*) FROM outbox WHERE subject = ? AND seq_id IN ('r1', 'r2')`, account.SubjectPasswordResetRequested); n != 2 {
				t.Errorf("the outbox of A's node holds %d of A's jobs, want 2", n)
			}
			if n := count(nodeB, `SELECT COUNT(*) FROM outbox WHERE seq_id = 'r3'`); n != 1 {
				t.Errorf("the outbox of B's node holds %d of B's jobs, want 1", n)
			}
			// An unknown account: nothing written, no job.
			err = s.CreatePasswordReset(ctx, account.PasswordReset{ID: "r9", AccountID: "acc_nobody", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)},
				account.PasswordResetRequested{ResetID: "r9"})
			if !errs.Is(errs.NotFound, err) {
				t.Errorf("CreatePasswordReset(unknown account) = %v, want NotFound", err)
			}
			for node := range nodes {
				if n := count(node, `SELECT COUNT(*) FROM outbox WHERE seq_id = 'r9'`); n != 0 {
					t.Errorf("a job for an unknown account on %s", node)
				}
			}

			now := t0.Add(time.Minute)
			if err := s.CheckPasswordReset(ctx, "r1", idA, now); err != nil {
				t.Errorf("CheckPasswordReset(r1) = %v", err)
			}
			for _, c := range []struct{ what, id, acc string }{
				{"another account's link", "r3", idA},
				{"an unknown link", "r0", idA},
			} {
				if err := s.CheckPasswordReset(ctx, c.id, c.acc, now); !errs.Is(errs.NotFound, err) {
					t.Errorf("%s: CheckPasswordReset = %v, want NotFound", c.what, err)
				}
				if err := s.UsePasswordReset(ctx, c.id, c.acc, "$hash$x", now); !errs.Is(errs.NotFound, err) {
					t.Errorf("%s: UsePasswordReset = %v, want NotFound", c.what, err)
				}
			}
			if err := s.CheckPasswordReset(ctx, "r1", idA, t0.Add(account.ResetTTL)); !errs.Is(errs.NotFound, err) {
				t.Errorf("CheckPasswordReset(expired) = %v, want NotFound", err)
			}
			if err := s.UsePasswordReset(ctx, "r1", idA, "$hash$x", t0.Add(account.ResetTTL)); !errs.Is(errs.NotFound, err) {
				t.Errorf("UsePasswordReset(expired) = %v, want NotFound", err)
			}
			if h, err := s.GetPasswordHash(ctx, idA); err != nil || h != stored(idA, "", "").PasswordHash {
				t.Fatalf("refusals changed the hash: %q, %v", h, err)
			}

			// Two uses of one link at once: one wins.
			var wg sync.WaitGroup
			results := make([]error, 2)
			for i := range results {
				wg.Add(1)
				go func() {
					defer wg.Done()
					results[i] = s.UsePasswordReset(ctx, "r1", idA, "$hash$new", now)
				}()
			}
			wg.Wait()
			won := 0
			for _, err := range results {
				switch {
				case err == nil:
					won++
				case !errs.Is(errs.NotFound, err):
					t.Errorf("a concurrent use failed: %v", err)
				}
			}
			if won != 1 {
				t.Fatalf("%d concurrent uses of one link succeeded, want 1 (%v)", won, results)
			}
			if h, _ := s.GetPasswordHash(ctx, idA); h != "$hash$new" {
				t.Errorf("hash after the reset %q", h)
			}
			if err := s.CheckPasswordReset(ctx, "r2", idA, now); !errs.Is(errs.NotFound, err) {
				t.Errorf("the account's other link after a reset: %v, want NotFound", err)
			}
			if err := s.CheckPasswordReset(ctx, "r3", idB, now); err != nil {
				t.Errorf("another account's link after a reset: %v", err)
			}

			// A password change voids the links sent before it.
			if err := s.SetPassword(ctx, idB, "$hash$changed", now); err != nil {
				t.Fatal(err)
			}
			if err := s.CheckPasswordReset(ctx, "r3", idB, now); !errs.Is(errs.NotFound, err) {
				t.Errorf("a link after a password change: %v, want NotFound", err)
			}
			if err := s.SetPassword(ctx, "acc_nobody", "$hash$x", now); !errs.Is(errs.NotFound, err) {
				t.Errorf("SetPassword(unknown) = %v, want NotFound", err)
			}
			if _, err := s.GetPasswordHash(ctx, "acc_nobody"); !errs.Is(errs.NotFound, err) {
				t.Errorf("GetPasswordHash(unknown) = %v, want NotFound", err)
			}

			// Links a day past their expiry are purged with the sessions.
			reset("r4", idB, now)
			if _, err := s.DeleteExpiredSessions(ctx, t0.Add(account.ResetTTL+24*time.Hour)); err != nil {
				t.Fatal(err)
			}
			left := 0
			for node := range nodes {
				left += count(node, `SELECT COUNT(*) FROM password_resets`)
			}
			if left != 1 {
				t.Errorf("%d links left after the purge, want 1 (the one made later)", left)
			}
		})
	}
}
