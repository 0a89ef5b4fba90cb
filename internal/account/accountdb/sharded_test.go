package accountdb_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/account"
	"github.com/globomantics/globomantics/internal/account/accountdb"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/ids"
	"github.com/globomantics/globomantics/internal/platform/shard"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// counter returns a function that runs a COUNT query q on a node of nodes.
func counter(ctx context.Context, t *testing.T, nodes map[string]*sqldb.DB) func(node, q string, args ...any) int {
	return func(node, q string, args ...any) int {
		t.Helper()
		var n int
		if err := nodes[node].QueryRowContext(ctx, q, args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
}

func hashOf(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// TestSharded runs the store over one node and over two: accounts and
// sessions land on the account's node, the e-mail directory on the e-mail's
// node; look-ups by e-mail, by id and by session key (with a shard, or a
// bare hash from an older token) work across nodes; an e-mail is unique
// across nodes; a directory row whose account was never written blocks its
// e-mail only for ClaimTimeout; and with one node closed only what lives on
// it fails, with errs.Unavailable.
func TestSharded(t *testing.T) {
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
			home := func(key string) string { return m.NodeFor(shard.ForKey(key)) }
			count := counter(ctx, t, nodes)
			// Account a on node a with its e-mail's directory row on node b,
			// and the other way round.
			idA := testenv.KeyOnNode(t, m, nodeA, "acc_a")
			idB := testenv.KeyOnNode(t, m, nodeB, "acc_b")
			mailA := testenv.KeyOnNode(t, m, nodeB, "a") + "@example.com"
			for home(mailA) != nodeB {
				mailA = "x" + mailA
			}
			mailB := testenv.KeyOnNode(t, m, nodeA, "b") + "@example.com"
			for home(mailB) != nodeA {
				mailB = "y" + mailB
			}
			accA, accB := stored(idA, mailA, "A"), stored(idB, mailB, "B")
			for _, a := range []account.StoredAccount{accA, accB} {
				if err := s.CreateAccount(ctx, a); err != nil {
					t.Fatal(err)
				}
				for name := range nodes {
					acc := count(name, `SELECT COUNT(*) FROM accounts WHERE id = ? AND shard = ?`, a.ID, int(shard.ForUser(a.ID)))
					dir := count(name, `SELECT COUNT(*) FROM account_emails WHERE email = ? AND account_id = ? AND account_shard = ? AND shard = ?`,
						a.Email, a.ID, int(shard.ForUser(a.ID)), int(shard.ForKey(a.Email)))
					if want := m.NodeFor(shard.ForUser(a.ID)) == name; (acc == 1) != want {
						t.Errorf("account %s on node %s: %d rows", a.ID, name, acc)
					}
					if want := home(a.Email) == name; (dir == 1) != want {
						t.Errorf("directory row of %s on node %s: %d rows", a.Email, name, dir)
					}
				}
				if got, err := s.GetAccountByEmail(ctx, a.Email); err != nil || got != a {
					t.Errorf("GetAccountByEmail(%s) = %+v, %v", a.Email, got, err)
				}
				if got, err := s.GetAccount(ctx, a.ID); err != nil || got != a.Account {
					t.Errorf("GetAccount(%s) = %+v, %v", a.ID, got, err)
				}
			}
			// An e-mail is unique across nodes.
			if err := s.CreateAccount(ctx, stored(idB+"x", mailA, "Impostor")); !errs.Is(errs.Conflict, err) {
				t.Errorf("duplicate e-mail from another node = %v, want Conflict", err)
			}

			// Sessions: found by a key naming the shard, and by a bare hash.
			tokens := map[string]string{}
			for _, a := range []account.StoredAccount{accA, accB} {
				tok := ids.TokenInShard(uint16(shard.ForUser(a.ID)))
				tokens[a.ID] = tok
				sess := account.StoredSession{TokenHash: hashOf(tok), AccountID: a.ID, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
				if err := s.CreateSession(ctx, sess); err != nil {
					t.Fatal(err)
				}
				if n := count(m.NodeFor(shard.ForUser(a.ID)), `SELECT COUNT(*) FROM sessions WHERE token_hash = ? AND shard = ?`, sess.TokenHash, int(shard.ForUser(a.ID))); n != 1 {
					t.Errorf("session of %s not on its account's node", a.ID)
				}
				for _, key := range []string{account.SessionKey(tok), hashOf(tok)} {
					got, acc, err := s.GetSession(ctx, key)
					if err != nil || got != sess || acc != a.Account {
						t.Errorf("GetSession(%s) = %+v, %+v, %v", key, got, acc, err)
					}
				}
				if err := s.ExtendSession(ctx, account.SessionKey(tok), t0.Add(2*time.Hour)); err != nil {
					t.Fatal(err)
				}
				if got, _, _ := s.GetSession(ctx, account.SessionKey(tok)); !got.ExpiresAt.Equal(t0.Add(2 * time.Hour)) {
					t.Errorf("expiry after extend = %v", got.ExpiresAt)
				}
			}

			// A directory row whose account was never written.
			ghostMail := "ghost@example.com"
			ghostID := "acc_ghost"
			if _, err := nodes[home(ghostMail)].ExecContext(ctx, `INSERT INTO account_emails (email, account_id, account_shard, created_at, shard)
				VALUES (?, ?, ?, ?, ?)`, ghostMail, ghostID, int(shard.ForUser(ghostID)), t0.UnixMilli(), int(shard.ForKey(ghostMail))); err != nil {
				t.Fatal(err)
			}
			if _, err := s.GetAccountByEmail(ctx, ghostMail); !errs.Is(errs.NotFound, err) {
				t.Errorf("GetAccountByEmail of a ghost = %v, want NotFound", err)
			}
			early := stored("acc_new1", ghostMail, "Early")
			early.CreatedAt = t0.Add(accountdb.ClaimTimeout / 2)
			if err := s.CreateAccount(ctx, early); !errs.Is(errs.Conflict, err) {
				t.Errorf("registering within ClaimTimeout of a claim = %v, want Conflict", err)
			}
			late := stored("acc_new2", ghostMail, "Late")
			late.CreatedAt = t0.Add(2 * accountdb.ClaimTimeout)
			if err := s.CreateAccount(ctx, late); err != nil {
				t.Fatalf("registering after ClaimTimeout of a claim = %v", err)
			}
			if got, err := s.GetAccountByEmail(ctx, ghostMail); err != nil || got.ID != late.ID {
				t.Errorf("GetAccountByEmail after the takeover = %+v, %v", got, err)
			}

			// Accounts from before the directory get their rows at Open.
			for name := range nodes {
				if _, err := nodes[name].ExecContext(ctx, `DELETE FROM account_emails`); err != nil {
					t.Fatal(err)
				}
				if _, err := nodes[name].ExecContext(ctx, `UPDATE accounts SET shard = -1`); err != nil {
					t.Fatal(err)
				}
				if _, err := nodes[name].ExecContext(ctx, `UPDATE sessions SET shard = -1`); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := accountdb.OpenSharded(ctx, sh); err != nil {
				t.Fatal(err)
			}
			for _, a := range []account.StoredAccount{accA, accB} {
				if got, err := s.GetAccountByEmail(ctx, a.Email); err != nil || got != a {
					t.Errorf("GetAccountByEmail(%s) after the backfill = %+v, %v", a.Email, got, err)
				}
			}
			for name := range nodes {
				if n := count(name, `SELECT COUNT(*) FROM accounts WHERE shard = -1`) + count(name, `SELECT COUNT(*) FROM sessions WHERE shard = -1`); n != 0 {
					t.Errorf("node %s: %d rows without a shard after Open", name, n)
				}
			}

			if nodeA == nodeB {
				return
			}
			// Account c and its e-mail's directory row both live on node a.
			mailC := "c@example.com"
			for home(mailC) != nodeA {
				mailC = "c" + mailC
			}
			accC := stored(testenv.KeyOnNode(t, m, nodeA, "acc_c"), mailC, "C")
			if err := s.CreateAccount(ctx, accC); err != nil {
				t.Fatal(err)
			}
			nodes[nodeB].Close()
			// Account a lives on node a, but its e-mail's directory row on b.
			if _, err := s.GetAccount(ctx, idA); err != nil {
				t.Errorf("GetAccount on the live node = %v", err)
			}
			if _, _, err := s.GetSession(ctx, account.SessionKey(tokens[idA])); err != nil {
				t.Errorf("GetSession on the live node = %v", err)
			}
			if _, _, err := s.GetSession(ctx, hashOf(tokens[idA])); err != nil {
				t.Errorf("GetSession by bare hash, found on the live node = %v", err)
			}
			if _, err := s.GetAccountByEmail(ctx, mailC); err != nil {
				t.Errorf("GetAccountByEmail, all on the live node = %v", err)
			}
			if _, err := s.GetAccountByEmail(ctx, mailA); !errs.Is(errs.Unavailable, err) {
				t.Errorf("GetAccountByEmail with the directory node closed = %v, want Unavailable", err)
			}
			if _, err := s.GetAccount(ctx, idB); !errs.Is(errs.Unavailable, err) {
				t.Errorf("GetAccount on the closed node = %v, want Unavailable", err)
			}
			if _, _, err := s.GetSession(ctx, account.SessionKey(tokens[idB])); !errs.Is(errs.Unavailable, err) {
				t.Errorf("GetSession on the closed node = %v, want Unavailable", err)
			}
			if _, _, err := s.GetSession(ctx, hashOf("unknown")); !errs.Is(errs.Unavailable, err) {
				t.Errorf("GetSession of an unknown bare hash with a node closed = %v, want Unavailable", err)
			}
			if _, err := s.DeleteExpiredSessions(ctx, t0.Add(time.Hour)); !errs.Is(errs.Unavailable, err) {
				t.Errorf("DeleteExpiredSessions with a node closed = %v, want Unavailable", err)
			}
		})
	}
}

// TestShardedService: the account service over two nodes registers, logs in
// and authenticates accounts wherever they land, with tokens that carry the
// account's shard.
func TestShardedService(t *testing.T) {
	ctx := context.Background()
	for _, b := range testenv.ShardedBackends()[1:2] { // sqlite, two nodes
		sh, _ := b.Open(t)
		s, err := accountdb.OpenSharded(ctx, sh)
		if err != nil {
			t.Fatal(err)
		}
		svc := account.NewService(s, clock.NewFake(t0), account.WithArgonParams(account.ArgonParams{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}))
		nodesSeen := map[string]bool{}
		for i := range 6 {
			email := fmt.Sprintf("user%d@example.com", i)
			a, err := svc.Register(ctx, account.Registration{Email: email, Password: "correct horse", Name: "U"})
			if err != nil {
				t.Fatal(err)
			}
			nodesSeen[sh.Map().NodeFor(shard.ForUser(a.ID))] = true
			sess, err := svc.Login(ctx, email, "correct horse")
			if err != nil {
				t.Fatal(err)
			}
			if got, ok := shard.OfToken(sess.Token); !ok || got != shard.ForUser(a.ID) {
				t.Errorf("token carries shard %d, %v; want %d", got, ok, shard.ForUser(a.ID))
			}
			if got, err := svc.Authenticate(ctx, sess.Token); err != nil || got.ID != a.ID {
				t.Errorf("Authenticate = %+v, %v", got, err)
			}
			if err := svc.Logout(ctx, sess.Token); err != nil {
				t.Fatal(err)
			}
			if _, err := svc.Authenticate(ctx, sess.Token); !errs.Is(errs.Unauthorized, err) {
				t.Errorf("Authenticate after logout = %v", err)
			}
			if _, err := svc.Register(ctx, account.Registration{Email: email, Password: "correct horse", Name: "U"}); !errs.Is(errs.Conflict, err) {
				t.Errorf("registering twice = %v, want Conflict", err)
			}
		}
		t.Logf("accounts on nodes %v", nodesSeen)
	}
}
