package checkoutdb_test

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/checkout"
	"github.com/globomantics/globomantics/internal/checkout/checkoutdb"
	"github.com/globomantics/globomantics/internal/order"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/ids"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/shard"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
	"github.com/globomantics/globomantics/internal/platform/testenv"
	"github.com/globomantics/globomantics/internal/shipping"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// fixture is one fresh store over a backend, with a user on its first
// node and one on its last (the same node in a single-node topology).
type fixture struct {
	s            *checkoutdb.Store
	sh           *sqldb.Sharded
	nodes        map[string]*sqldb.DB
	userA, userB string
}

func newFixture(t *testing.T, b testenv.ShardedBackend) *fixture {
	t.Helper()
	sh, nodes := b.Open(t)
	s, err := checkoutdb.OpenSharded(context.Background(), sh)
	if err != nil {
		t.Fatal(err)
	}
	// Migrations are applied once: opening again is harmless.
	if _, err := checkoutdb.OpenSharded(context.Background(), sh); err != nil {
		t.Fatalf("second OpenSharded: %v", err)
	}
	first, last := testenv.FirstAndLast(sh)
	return &fixture{s: s, sh: sh, nodes: nodes,
		userA: testenv.KeyOnNode(t, sh.Map(), first, "usr_a"),
		userB: testenv.KeyOnNode(t, sh.Map(), last, "usr_b")}
}

// newSaga is a saga at its first step, as the service makes one.
func newSaga(user, key string) checkout.Saga {
	return checkout.Saga{
		ID: ids.NewInShard("ord", t0, uint16(shard.ForUser(user))), UserID: user, Key: key, RequestHash: "hash-" + key,
		State: checkout.SagaRunning, Step: 0, NextAt: t0, Deadline: t0.Add(20 * time.Second),
		Epoch: 1, Owner: "inst-1", LeaseUntil: t0.Add(10 * time.Second),
		Data: checkout.Data{Email: "ada@example.com", Card4: "4242",
			Address: shipping.Address{Name: "Ada", Line1: "1 St", City: "London", PostalCode: "N1", Country: "GB"}},
		Callback:  checkout.CallbackStatus{URL: "https://example.com/cb"},
		CreatedAt: t0, UpdatedAt: t0,
	}
}

func mustCreate(t *testing.T, s *checkoutdb.Store, g checkout.Saga) checkout.Saga {
	t.Helper()
	got, created, err := s.Create(context.Background(), g)
	if err != nil || !created {
		t.Fatalf("Create(%s/%s) = created %v, %v", g.UserID, g.Key, created, err)
	}
	return got
}

func mustLoad(t *testing.T, s *checkoutdb.Store, id string) checkout.Saga {
	t.Helper()
	g, err := s.Load(context.Background(), id)
	if err != nil {
		t.Fatalf("Load(%s): %v", id, err)
	}
	return g
}

// outcomes lists a history as "step/outcome@epoch" strings, and checks
// that its sequence numbers grow.
func outcomes(t *testing.T, s *checkoutdb.Store, id string) []string {
	t.Helper()
	h, err := s.History(context.Background(), id)
	if err != nil {
		t.Fatalf("History(%s): %v", id, err)
	}
	out := []string{}
	for i, r := range h {
		if i > 0 && r.Seq <= h[i-1].Seq {
			t.Errorf("history of %s: record %d has seq %d after %d", id, i, r.Seq, h[i-1].Seq)
		}
		out = append(out, fmt.Sprintf("%s/%s@%d", r.Step, r.Outcome, r.Epoch))
	}
	return out
}

// save writes g as a driver would after step name, fenced by its epoch and
// version.
func save(s *checkoutdb.Store, g *checkout.Saga, step, outcome string) error {
	return s.Save(context.Background(), g, checkout.StepRecord{Step: step, Outcome: outcome, Epoch: g.Epoch, At: t0})
}

// TestStore is the conformance suite of checkout.Store, run on every
// backend and topology of testenv.ShardedBackends.
func TestStore(t *testing.T) {
	tests := []struct {
		name string
		fn   func(t *testing.T, f *fixture)
	}{
		{"CreateGetLoad", testCreateGetLoad},
		{"CreateConcurrentOneWinner", testCreateConcurrent},
		{"NotFound", testNotFound},
		{"SaveFencedByVersionAndEpoch", testSaveFenced},
		{"RenewFenced", testRenew},
		{"ExpiredOnEveryNode", testExpired},
		{"ClaimCompareAndSet", testClaim},
		{"ClaimFencesOldDriver", testClaimFences},
		{"RestartOnlyCancelledRetryable", testRestart},
		{"RestartConcurrentOneWinner", testRestartConcurrent},
		{"RestartedHistoryPurged", testRestartedHistoryPurged},
		{"Callbacks", testCallbacks},
		{"Purge", testPurge},
		{"RowsOnTheirUsersNode", testPlacement},
	}
	for _, b := range testenv.ShardedBackends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					tc.fn(t, newFixture(t, b))
				})
			}
		})
	}
}

func testCreateGetLoad(t *testing.T, f *fixture) {
	ctx := context.Background()
	for _, u := range []string{f.userA, f.userB} {
		g := newSaga(u, "key-1")
		g.Data.Items = []order.Item{{ProductID: "prd_1", Name: "Widget", Quantity: 2, UnitPrice: money.USD(500), LineTotal: money.USD(1000)}}
		g.Data.Total = money.USD(1599)
		got := mustCreate(t, f.s, g)
		want := g
		want.Version = 1
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Create returned\n%+v\nwant\n%+v", got, want)
		}
		byKey, err := f.s.Get(ctx, u, "key-1")
		if err != nil || !reflect.DeepEqual(byKey, want) {
			t.Errorf("Get = %v\n%+v\nwant\n%+v", err, byKey, want)
		}
		if byID := mustLoad(t, f.s, g.ID); !reflect.DeepEqual(byID, want) {
			t.Errorf("Load =\n%+v\nwant\n%+v", byID, want)
		}
		if h := outcomes(t, f.s, g.ID); !reflect.DeepEqual(h, []string{"checkout/started@1"}) {
			t.Errorf("history after Create = %v", h)
		}
		// The same key again (another id, another request): nothing changes,
		// the first saga is returned.
		again := newSaga(u, "key-1")
		again.RequestHash = "other"
		stored, created, err := f.s.Create(ctx, again)
		if err != nil || created || stored.ID != g.ID || stored.RequestHash != g.RequestHash {
			t.Errorf("second Create = %s %q created %v, %v; want the first saga %s", stored.ID, stored.RequestHash, created, err, g.ID)
		}
		if _, err := f.s.Load(ctx, again.ID); !errs.Is(errs.NotFound, err) {
			t.Errorf("Load of the refused saga = %v, want NotFound", err)
		}
	}
	// Keys belong to their user: another user may use the same key.
	if f.userA != f.userB {
		other := newSaga(f.userA+"x", "key-1")
		mustCreate(t, f.s, other)
	}
}

func testCreateConcurrent(t *testing.T, f *fixture) {
	ctx := context.Background()
	const n = 20
	var (
		wg      sync.WaitGroup
		created atomic.Int32
		idsMu   sync.Mutex
		seen    = map[string]int{}
		errList []error
	)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g, ok, err := f.s.Create(ctx, newSaga(f.userB, "same-key"))
			idsMu.Lock()
			defer idsMu.Unlock()
			if err != nil {
				errList = append(errList, err)
				return
			}
			if ok {
				created.Add(1)
			}
			seen[g.ID]++
		}()
	}
	wg.Wait()
	if len(errList) > 0 {
		t.Fatalf("concurrent Create failed: %v", errList)
	}
	if created.Load() != 1 || len(seen) != 1 {
		t.Fatalf("%d of %d concurrent Creates created, answers name %d sagas (%v); want exactly one", created.Load(), n, len(seen), seen)
	}
	for id := range seen {
		if h := outcomes(t, f.s, id); len(h) != 1 {
			t.Errorf("history of the one saga = %v", h)
		}
	}
}

func testNotFound(t *testing.T, f *fixture) {
	ctx := context.Background()
	mustCreate(t, f.s, newSaga(f.userA, "k"))
	if _, err := f.s.Get(ctx, f.userA, "other-key"); !errs.Is(errs.NotFound, err) {
		t.Errorf("Get of an unknown key = %v, want NotFound", err)
	}
	if _, err := f.s.Get(ctx, f.userB+"-nobody", "k"); !errs.Is(errs.NotFound, err) {
		t.Errorf("Get of another user's key = %v, want NotFound", err)
	}
	for _, id := range []string{newSaga(f.userB, "k").ID, "not-an-id", ""} {
		if _, err := f.s.Load(ctx, id); !errs.Is(errs.NotFound, err) {
			t.Errorf("Load(%q) = %v, want NotFound", id, err)
		}
	}
}

func testSaveFenced(t *testing.T, f *fixture) {
	g := mustCreate(t, f.s, newSaga(f.userB, "k"))
	// A driver moves the saga on: each Save bumps the version.
	g.Step, g.Attempts, g.Data.PaymentID = 1, 0, "pay_1"
	if err := save(f.s, &g, "lock_cart", "done"); err != nil {
		t.Fatalf("Save: %v", err)
	}
	if g.Version != 2 {
		t.Errorf("Version after Save = %d, want 2", g.Version)
	}
	g.Attempts = 1
	if err := save(f.s, &g, "reserve_stock", "retry"); err != nil || g.Version != 3 {
		t.Fatalf("second Save = %v, version %d", err, g.Version)
	}
	stored := mustLoad(t, f.s, g.ID)
	if !reflect.DeepEqual(stored, g) {
		t.Errorf("stored after Save\n%+v\nwant\n%+v", stored, g)
	}

	// A stale copy (version 2) is refused, and writes nothing.
	stale := g
	stale.Version = 2
	stale.Step = 7
	if err := save(f.s, &stale, "x", "done"); !errs.Is(errs.Conflict, err) {
		t.Errorf("Save with a stale version = %v, want Conflict", err)
	}
	if stale.Version != 2 {
		t.Errorf("a refused Save changed the version to %d", stale.Version)
	}
	// So is a copy of another epoch, at the current version.
	other := g
	other.Epoch = 2
	if err := save(f.s, &other, "y", "done"); !errs.Is(errs.Conflict, err) {
		t.Errorf("Save with another epoch = %v, want Conflict", err)
	}
	if got := mustLoad(t, f.s, g.ID); !reflect.DeepEqual(got, g) {
		t.Errorf("refused Saves changed the saga:\n%+v", got)
	}
	// Final states, failures and callbacks are stored too.
	g.State, g.Failure, g.Retryable = checkout.SagaCancelled, &checkout.Failure{Status: 503, Detail: "down"}, true
	g.ExpiresAt = t0.Add(24 * time.Hour)
	g.Callback = checkout.CallbackStatus{URL: g.Callback.URL, State: checkout.CallbackPending, NextAt: t0}
	if err := save(f.s, &g, "rollback", "done"); err != nil {
		t.Fatal(err)
	}
	if got := mustLoad(t, f.s, g.ID); !reflect.DeepEqual(got, g) {
		t.Errorf("stored final saga\n%+v\nwant\n%+v", got, g)
	}
	// One write may carry the records of several steps, appended in
	// order; the epoch recorded is the writer's.
	g.State = checkout.SagaCompensating
	recs := []checkout.StepRecord{{Step: "cancel_order", Outcome: "undone", At: t0}, {Step: "void_payment", Outcome: "undone", At: t0},
		{Step: "release_stock", Outcome: "undone", Detail: strings.Repeat("d", 600), Epoch: 99, At: t0}}
	if err := f.s.Save(context.Background(), &g, recs...); err != nil {
		t.Fatal(err)
	}
	want := []string{"checkout/started@1", "lock_cart/done@1", "reserve_stock/retry@1", "rollback/done@1",
		"cancel_order/undone@1", "void_payment/undone@1", "release_stock/undone@1"}
	if h := outcomes(t, f.s, g.ID); !reflect.DeepEqual(h, want) {
		t.Errorf("history = %v, want %v", h, want)
	}
	// More records than one write may carry: refused, nothing written.
	before := mustLoad(t, f.s, g.ID)
	many := make([]checkout.StepRecord, checkout.MaxRecordsPerWrite+1)
	for i := range many {
		many[i] = checkout.StepRecord{Step: fmt.Sprintf("s%d", i), Outcome: "done", At: t0}
	}
	g2 := before
	g2.Step = 0
	if err := f.s.Save(context.Background(), &g2, many...); !errs.Is(errs.Invalid, err) {
		t.Errorf("Save of %d records = %v, want Invalid", len(many), err)
	}
	if got := mustLoad(t, f.s, g.ID); !reflect.DeepEqual(got, before) {
		t.Errorf("a refused Save changed the saga")
	}
	if h := outcomes(t, f.s, g.ID); len(h) != len(want) {
		t.Errorf("a refused Save appended records: %v", h)
	}
	// Exactly MaxRecordsPerWrite is fine.
	if err := f.s.Save(context.Background(), &g2, many[1:]...); err != nil {
		t.Errorf("Save of %d records = %v", len(many)-1, err)
	}
	if h := outcomes(t, f.s, g.ID); len(h) != len(want)+len(many)-1 {
		t.Errorf("history after a full write has %d records", len(h))
	}
}

func testRenew(t *testing.T, f *fixture) {
	ctx := context.Background()
	g := mustCreate(t, f.s, newSaga(f.userA, "k"))
	until := t0.Add(time.Minute)
	if err := f.s.Renew(ctx, g.ID, 1, until); err != nil {
		t.Fatalf("Renew: %v", err)
	}
	if got := mustLoad(t, f.s, g.ID); !got.LeaseUntil.Equal(until) || got.Version != g.Version {
		t.Errorf("after Renew: lease %v version %d, want %v and an unchanged version %d", got.LeaseUntil, got.Version, until, g.Version)
	}
	if err := f.s.Renew(ctx, g.ID, 2, t0.Add(time.Hour)); !errs.Is(errs.Conflict, err) {
		t.Errorf("Renew with another epoch = %v, want Conflict", err)
	}
	if got := mustLoad(t, f.s, g.ID); !got.LeaseUntil.Equal(until) {
		t.Errorf("a refused Renew moved the lease to %v", got.LeaseUntil)
	}
	// The zero time hands the saga over: recovery finds it at once.
	if err := f.s.Renew(ctx, g.ID, 1, time.Time{}); err != nil {
		t.Fatalf("Renew to the zero time: %v", err)
	}
	if got, err := f.s.Expired(ctx, t0.Add(-time.Hour), 10); err != nil || !reflect.DeepEqual(claimIDs(got), []string{g.ID}) {
		t.Errorf("Expired after a hand-over = %v, %v", claimIDs(got), err)
	}
	if ok, err := f.s.Claim(ctx, checkout.Claim{ID: g.ID, Epoch: 1}, "next", t0, t0.Add(time.Minute)); !ok || err != nil {
		t.Errorf("Claim of a handed-over saga = %v, %v", ok, err)
	}
	g = mustLoad(t, f.s, g.ID)
	// A finished saga has no lease to renew: its driver must stop.
	g.State, g.ExpiresAt = checkout.SagaConfirmed, t0.Add(24*time.Hour)
	if err := save(f.s, &g, "complete_cart", "done"); err != nil {
		t.Fatal(err)
	}
	if err := f.s.Renew(ctx, g.ID, g.Epoch, t0.Add(time.Hour)); !errs.Is(errs.Conflict, err) {
		t.Errorf("Renew of a confirmed saga = %v, want Conflict", err)
	}
}

// put creates a saga for user under key in state with its lease until
// lease.
func put(t *testing.T, s *checkoutdb.Store, user, key, state string, lease time.Time) checkout.Saga {
	t.Helper()
	g := mustCreate(t, s, newSaga(user, key))
	if state == checkout.SagaRunning && lease.Equal(g.LeaseUntil) {
		return g
	}
	g.State, g.LeaseUntil = state, lease
	if state == checkout.SagaConfirmed || state == checkout.SagaCancelled {
		g.ExpiresAt = t0.Add(24 * time.Hour)
	}
	if err := save(s, &g, "setup", "done"); err != nil {
		t.Fatal(err)
	}
	return g
}

func claimIDs(cs []checkout.Claim) []string {
	out := []string{}
	for _, c := range cs {
		out = append(out, c.ID)
	}
	sort.Strings(out)
	return out
}

func testExpired(t *testing.T, f *fixture) {
	ctx := context.Background()
	now := t0.Add(time.Minute)
	var want []string
	for _, u := range []string{f.userA, f.userB} {
		late := put(t, f.s, u, "running-late", checkout.SagaRunning, t0)
		back := put(t, f.s, u, "compensating-late", checkout.SagaCompensating, t0.Add(30*time.Second))
		want = append(want, late.ID, back.ID)
		put(t, f.s, u, "running-live", checkout.SagaRunning, now.Add(time.Second))
		put(t, f.s, u, "running-now", checkout.SagaRunning, now) // runs out after now, not before
		put(t, f.s, u, "confirmed", checkout.SagaConfirmed, t0)
		put(t, f.s, u, "cancelled", checkout.SagaCancelled, t0)
	}
	sort.Strings(want)
	got, err := f.s.Expired(ctx, now, 100)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(claimIDs(got), want) {
		t.Errorf("Expired = %v, want %v", claimIDs(got), want)
	}
	for _, c := range got {
		if c.Epoch != 1 {
			t.Errorf("claim %s has epoch %d, want 1", c.ID, c.Epoch)
		}
	}
	if got, err := f.s.Expired(ctx, t0, 100); err != nil || len(got) != 0 {
		t.Errorf("Expired before any lease ran out = %v, %v", claimIDs(got), err)
	}
	// limit bounds what one call returns.
	got, err = f.s.Expired(ctx, now, 1)
	if err != nil || len(got) != 1 {
		t.Errorf("Expired(limit 1) = %d claims, %v; want 1", len(got), err)
	}
}

func testClaim(t *testing.T, f *fixture) {
	ctx := context.Background()
	g := put(t, f.s, f.userB, "k", checkout.SagaRunning, t0)
	now := t0.Add(time.Minute)
	until := now.Add(10 * time.Second)
	c := checkout.Claim{ID: g.ID, Epoch: g.Epoch}

	// Two instances race for it: exactly one wins.
	var (
		wg   sync.WaitGroup
		won  [2]bool
		errz [2]error
	)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			won[i], errz[i] = f.s.Claim(ctx, c, fmt.Sprintf("inst-%d", i+2), now, until)
		}()
	}
	wg.Wait()
	if errz[0] != nil || errz[1] != nil || won[0] == won[1] {
		t.Fatalf("concurrent Claims = %v %v, %v %v; want exactly one winner", won[0], errz[0], won[1], errz[1])
	}
	winner := "inst-2"
	if won[1] {
		winner = "inst-3"
	}
	got := mustLoad(t, f.s, g.ID)
	if got.Epoch != g.Epoch+1 || got.Owner != winner || !got.LeaseUntil.Equal(until) || got.Version != g.Version+1 {
		t.Errorf("after Claim: epoch %d owner %q lease %v version %d; want %d %q %v %d",
			got.Epoch, got.Owner, got.LeaseUntil, got.Version, g.Epoch+1, winner, until, g.Version+1)
	}
	if got.State != g.State || got.Step != g.Step || !reflect.DeepEqual(got.Data, g.Data) {
		t.Errorf("Claim changed the saga's progress: %+v", got)
	}
	h := outcomes(t, f.s, g.ID)
	if last := h[len(h)-1]; last != "lease/claimed@2" {
		t.Errorf("history after Claim ends with %q, want lease/claimed@2 (%v)", last, h)
	}
	hist, _ := f.s.History(ctx, g.ID)
	if r := hist[len(hist)-1]; r.Seq/checkout.MaxRecordsPerWrite != got.Version || r.Detail != winner {
		t.Errorf("claim record: seq %d detail %q, want one of version %d, %q", r.Seq, r.Detail, got.Version, winner)
	}

	// The same claim again (a stale epoch) fails, and so does a claim of a
	// saga whose lease has not run out.
	if ok, err := f.s.Claim(ctx, c, "inst-4", now.Add(time.Hour), now.Add(2*time.Hour)); ok || err != nil {
		t.Errorf("Claim with a stale epoch = %v, %v", ok, err)
	}
	c2 := checkout.Claim{ID: g.ID, Epoch: got.Epoch}
	if ok, err := f.s.Claim(ctx, c2, "inst-4", now, now.Add(time.Minute)); ok || err != nil {
		t.Errorf("Claim of a saga whose lease runs until %v at %v = %v, %v", until, now, ok, err)
	}
	// Nor can a finished saga be claimed.
	done := put(t, f.s, f.userA, "done", checkout.SagaConfirmed, t0)
	if ok, err := f.s.Claim(ctx, checkout.Claim{ID: done.ID, Epoch: done.Epoch}, "inst-4", now, until); ok || err != nil {
		t.Errorf("Claim of a confirmed saga = %v, %v", ok, err)
	}
}

func testClaimFences(t *testing.T, f *fixture) {
	ctx := context.Background()
	old := put(t, f.s, f.userA, "k", checkout.SagaCompensating, t0)
	now := t0.Add(time.Minute)
	ok, err := f.s.Claim(ctx, checkout.Claim{ID: old.ID, Epoch: old.Epoch}, "new", now, now.Add(time.Minute))
	if err != nil || !ok {
		t.Fatalf("Claim = %v, %v", ok, err)
	}
	// The old driver, paused past its lease, comes back: it can neither
	// write nor renew.
	old.Step = 3
	if err := save(f.s, &old, "cancel_order", "undone"); !errs.Is(errs.Conflict, err) {
		t.Errorf("old driver's Save after a claim = %v, want Conflict", err)
	}
	if err := f.s.Renew(ctx, old.ID, old.Epoch, now.Add(time.Hour)); !errs.Is(errs.Conflict, err) {
		t.Errorf("old driver's Renew after a claim = %v, want Conflict", err)
	}
	// The new driver can.
	g := mustLoad(t, f.s, old.ID)
	if err := f.s.Renew(ctx, g.ID, g.Epoch, now.Add(2*time.Minute)); err != nil {
		t.Errorf("new driver's Renew: %v", err)
	}
	g.Step = 2
	if err := save(f.s, &g, "cancel_shipment", "undone"); err != nil {
		t.Errorf("new driver's Save: %v", err)
	}
	if got := mustLoad(t, f.s, old.ID); got.Step != 2 || got.Epoch != 2 {
		t.Errorf("stored step %d epoch %d, want 2 and 2", got.Step, got.Epoch)
	}
}

func testRestart(t *testing.T, f *fixture) {
	ctx := context.Background()
	u := f.userB
	// Only a cancelled, retryable saga can be restarted.
	for _, tc := range []struct {
		key, state string
		retryable  bool
	}{
		{"running", checkout.SagaRunning, false},
		{"compensating", checkout.SagaCompensating, true},
		{"confirmed", checkout.SagaConfirmed, false},
		{"cancelled-final", checkout.SagaCancelled, false},
	} {
		g := mustCreate(t, f.s, newSaga(u, tc.key))
		g.State, g.Retryable = tc.state, tc.retryable
		if err := save(f.s, &g, "setup", "done"); err != nil {
			t.Fatal(err)
		}
		ng := newSaga(u, tc.key)
		if ok, err := f.s.Restart(ctx, ng); ok || err != nil {
			t.Errorf("Restart of a %s saga (retryable %v) = %v, %v", tc.state, tc.retryable, ok, err)
		}
		if got, _ := f.s.Get(ctx, u, tc.key); got.ID != g.ID {
			t.Errorf("a refused Restart replaced %s by %s", g.ID, got.ID)
		}
	}
	if ok, err := f.s.Restart(ctx, newSaga(u, "never")); ok || err != nil {
		t.Errorf("Restart of an unknown key = %v, %v", ok, err)
	}

	g := mustCreate(t, f.s, newSaga(u, "k"))
	g.State, g.Retryable, g.Failure = checkout.SagaCancelled, true, &checkout.Failure{Status: 503, Detail: "down"}
	g.ExpiresAt = t0.Add(24 * time.Hour)
	if err := save(f.s, &g, "rollback", "done"); err != nil {
		t.Fatal(err)
	}
	ng := newSaga(u, "k")
	ng.CreatedAt, ng.UpdatedAt = t0.Add(time.Minute), t0.Add(time.Minute)
	if ok, err := f.s.Restart(ctx, ng); !ok || err != nil {
		t.Fatalf("Restart = %v, %v", ok, err)
	}
	got, err := f.s.Get(ctx, u, "k")
	want := ng
	want.Version = 1
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("Get after Restart = %v\n%+v\nwant\n%+v", err, got, want)
	}
	if _, err := f.s.Load(ctx, g.ID); !errs.Is(errs.NotFound, err) {
		t.Errorf("Load of the replaced saga = %v, want NotFound", err)
	}
	if h := outcomes(t, f.s, ng.ID); !reflect.DeepEqual(h, []string{"checkout/started@1"}) {
		t.Errorf("history of the new saga = %v", h)
	}
	// The new one runs: it cannot be restarted again.
	if ok, err := f.s.Restart(ctx, newSaga(u, "k")); ok || err != nil {
		t.Errorf("Restart of the restarted, running saga = %v, %v", ok, err)
	}
}

func testRestartConcurrent(t *testing.T, f *fixture) {
	ctx := context.Background()
	g := mustCreate(t, f.s, newSaga(f.userA, "k"))
	g.State, g.Retryable = checkout.SagaCancelled, true
	if err := save(f.s, &g, "rollback", "done"); err != nil {
		t.Fatal(err)
	}
	const n = 5
	var (
		wg   sync.WaitGroup
		wins atomic.Int32
		mu   sync.Mutex
		errl []error
	)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := f.s.Restart(ctx, newSaga(f.userA, "k"))
			if err != nil {
				mu.Lock()
				errl = append(errl, err)
				mu.Unlock()
			}
			if ok {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 || len(errl) > 0 {
		t.Errorf("%d of %d concurrent Restarts won (errors %v); want exactly one", wins.Load(), n, errl)
	}
}

func testCallbacks(t *testing.T, f *fixture) {
	ctx := context.Background()
	var due []string
	for _, u := range []string{f.userA, f.userB} {
		g := mustCreate(t, f.s, newSaga(u, "k"))
		g.State, g.ExpiresAt = checkout.SagaConfirmed, t0.Add(24*time.Hour)
		g.Callback.State, g.Callback.NextAt = checkout.CallbackPending, t0
		if err := save(f.s, &g, "complete_cart", "done"); err != nil {
			t.Fatal(err)
		}
		due = append(due, g.ID)
		// Not due yet, and not pending: never returned.
		later := mustCreate(t, f.s, newSaga(u, "later"))
		later.State, later.Callback.State, later.Callback.NextAt = checkout.SagaConfirmed, checkout.CallbackPending, t0.Add(time.Hour)
		if err := save(f.s, &later, "complete_cart", "done"); err != nil {
			t.Fatal(err)
		}
		mustCreate(t, f.s, newSaga(u, "running")) // callback state "", running
	}
	sort.Strings(due)
	dueIDs := func(now time.Time) []string {
		t.Helper()
		gs, err := f.s.DueCallbacks(ctx, now, 50)
		if err != nil {
			t.Fatal(err)
		}
		out := []string{}
		for _, g := range gs {
			out = append(out, g.ID)
		}
		sort.Strings(out)
		return out
	}
	if got := dueIDs(t0.Add(-time.Millisecond)); len(got) != 0 {
		t.Errorf("DueCallbacks before they are due = %v", got)
	}
	if got := dueIDs(t0); !reflect.DeepEqual(got, due) {
		t.Errorf("DueCallbacks(t0) = %v, want %v", got, due)
	}
	gs, _ := f.s.DueCallbacks(ctx, t0, 50)
	if len(gs) == 0 || gs[0].Callback.URL != "https://example.com/cb" || gs[0].Callback.State != checkout.CallbackPending {
		t.Fatalf("DueCallbacks returned %+v", gs)
	}

	// Two instances claim the same due callback: one does.
	id := due[0]
	var (
		wg  sync.WaitGroup
		won atomic.Int32
	)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := f.s.ClaimCallback(ctx, id, t0, t0.Add(time.Minute))
			if err != nil {
				t.Errorf("ClaimCallback: %v", err)
			}
			if ok {
				won.Add(1)
			}
		}()
	}
	wg.Wait()
	if won.Load() != 1 {
		t.Fatalf("%d of 2 concurrent ClaimCallbacks won", won.Load())
	}
	if got := dueIDs(t0.Add(time.Second)); !reflect.DeepEqual(got, due[1:]) {
		t.Errorf("DueCallbacks after a claim = %v, want %v", got, due[1:])
	}
	if got := mustLoad(t, f.s, id); !got.Callback.NextAt.Equal(t0.Add(time.Minute)) {
		t.Errorf("claimed callback next at %v", got.Callback.NextAt)
	}
	// The delivery failed: it is due again later.
	failed := checkout.CallbackStatus{URL: "https://example.com/cb", State: checkout.CallbackPending, Attempts: 1,
		LastError: "callback answered 500", NextAt: t0.Add(2 * time.Second)}
	if err := f.s.SaveCallback(ctx, id, failed); err != nil {
		t.Fatal(err)
	}
	if got := mustLoad(t, f.s, id); !reflect.DeepEqual(got.Callback, failed) {
		t.Errorf("callback after SaveCallback = %+v, want %+v", got.Callback, failed)
	}
	if got := dueIDs(t0.Add(2 * time.Second)); len(got) != len(due) {
		t.Errorf("DueCallbacks once the retry is due = %v", got)
	}
	// A stale claim (read before the retry was scheduled) is refused.
	if ok, err := f.s.ClaimCallback(ctx, id, t0, t0.Add(time.Minute)); ok || err != nil {
		t.Errorf("ClaimCallback with a stale next = %v, %v", ok, err)
	}
	delivered := checkout.CallbackStatus{URL: "https://example.com/cb", State: checkout.CallbackDelivered, Attempts: 2}
	if err := f.s.SaveCallback(ctx, id, delivered); err != nil {
		t.Fatal(err)
	}
	if got := mustLoad(t, f.s, id); !reflect.DeepEqual(got.Callback, delivered) {
		t.Errorf("delivered callback = %+v", got.Callback)
	}
	if got := dueIDs(t0.Add(24 * time.Hour)); len(got) != 2*len(due)-1 {
		// The two "later" ones and the other due one; not the delivered one.
		t.Errorf("DueCallbacks a day later = %v", got)
	}
	if ok, err := f.s.ClaimCallback(ctx, id, time.Time{}, t0.Add(time.Minute)); ok || err != nil {
		t.Errorf("ClaimCallback of a delivered callback = %v, %v", ok, err)
	}
}

func testPurge(t *testing.T, f *fixture) {
	ctx := context.Background()
	now := t0.Add(25 * time.Hour)
	var purged, kept []string
	mk := func(u, key, state string, expires time.Time, cbState string) checkout.Saga {
		g := mustCreate(t, f.s, newSaga(u, key))
		g.State, g.ExpiresAt, g.Callback.State = state, expires, cbState
		if err := save(f.s, &g, "end", "done"); err != nil {
			t.Fatal(err)
		}
		return g
	}
	for _, u := range []string{f.userA, f.userB} {
		purged = append(purged,
			mk(u, "confirmed-old", checkout.SagaConfirmed, t0.Add(24*time.Hour), checkout.CallbackDelivered).ID,
			mk(u, "cancelled-old", checkout.SagaCancelled, t0.Add(24*time.Hour), "").ID,
			mk(u, "failed-callback", checkout.SagaCancelled, t0.Add(time.Hour), checkout.CallbackFailed).ID)
		kept = append(kept,
			mk(u, "confirmed-fresh", checkout.SagaConfirmed, now.Add(time.Hour), "").ID,
			mk(u, "expires-now", checkout.SagaConfirmed, now, "").ID,
			mk(u, "callback-pending", checkout.SagaConfirmed, t0.Add(24*time.Hour), checkout.CallbackPending).ID,
			mk(u, "running", checkout.SagaRunning, time.Time{}, "").ID,
			mk(u, "compensating", checkout.SagaCompensating, time.Time{}, "").ID,
			// An unfinished saga with an expiry (never written so by the
			// service) is still not purged.
			mk(u, "running-expired", checkout.SagaRunning, t0.Add(time.Hour), "").ID)
	}
	n, err := f.s.Purge(ctx, now, 500)
	if err != nil || n != len(purged) {
		t.Fatalf("Purge = %d, %v; want %d", n, err, len(purged))
	}
	for _, id := range purged {
		if _, err := f.s.Load(ctx, id); !errs.Is(errs.NotFound, err) {
			t.Errorf("purged saga %s: Load = %v", id, err)
		}
		if h, err := f.s.History(ctx, id); err != nil || len(h) != 0 {
			t.Errorf("history of purged saga %s = %v, %v; want none", id, h, err)
		}
	}
	for _, id := range kept {
		mustLoad(t, f.s, id)
		if h := outcomes(t, f.s, id); len(h) != 2 {
			t.Errorf("history of kept saga %s = %v", id, h)
		}
	}
	// The key is forgotten: it may be used again.
	mustCreate(t, f.s, newSaga(f.userA, "confirmed-old"))
	if n, err := f.s.Purge(ctx, now, 500); n != 0 || err != nil {
		t.Errorf("second Purge = %d, %v", n, err)
	}
	// Once its callback is delivered, the pending one goes too.
	if err := f.s.SaveCallback(ctx, kept[2], checkout.CallbackStatus{URL: "u", State: checkout.CallbackDelivered, Attempts: 1}); err != nil {
		t.Fatal(err)
	}
	if n, err := f.s.Purge(ctx, now, 500); n != 1 || err != nil {
		t.Errorf("Purge after the callback was delivered = %d, %v; want 1", n, err)
	}
	// limit bounds one call.
	for i := range 3 {
		mk(f.userB, fmt.Sprintf("batch-%d", i), checkout.SagaConfirmed, t0, "")
	}
	if n, err := f.s.Purge(ctx, now, 1); err != nil || n < 1 || n > len(f.nodes) {
		t.Errorf("Purge(limit 1) = %d, %v", n, err)
	}
}

// testPlacement checks that a user's sagas and their history live on the
// user's node, with the user's shard, and that with the other node closed
// the user's calls still work while the closed node's users get
// errs.Unavailable.
func testPlacement(t *testing.T, f *fixture) {
	ctx := context.Background()
	m := f.sh.Map()
	gs := map[string]checkout.Saga{}
	for _, u := range []string{f.userA, f.userB} {
		gs[u] = put(t, f.s, u, "k", checkout.SagaRunning, t0)
		for name, db := range f.nodes {
			var sagas, steps int
			sh := int(shard.ForUser(u))
			if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM sagas WHERE user_id = ? AND shard = ?`, u, sh).Scan(&sagas); err != nil {
				t.Fatal(err)
			}
			if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM saga_steps WHERE saga_id = ? AND shard = ?`, gs[u].ID, sh).Scan(&steps); err != nil {
				t.Fatal(err)
			}
			mine := m.NodeFor(shard.ForUser(u)) == name
			if (sagas == 1) != mine || (steps == 2) != mine {
				t.Errorf("saga of %s on node %s: %d rows, %d steps (its node: %v)", u, name, sagas, steps, mine)
			}
		}
	}
	if f.userA == f.userB || len(f.nodes) < 2 {
		return
	}
	_, nodeB := testenv.FirstAndLast(f.sh)
	f.nodes[nodeB].Close()
	if _, err := f.s.Get(ctx, f.userA, "k"); err != nil {
		t.Errorf("Get on the live node = %v", err)
	}
	if _, err := f.s.Get(ctx, f.userB, "k"); !errs.Is(errs.Unavailable, err) {
		t.Errorf("Get on the closed node = %v, want Unavailable", err)
	}
	if _, _, err := f.s.Create(ctx, newSaga(f.userB, "k2")); !errs.Is(errs.Unavailable, err) {
		t.Errorf("Create on the closed node = %v, want Unavailable", err)
	}
	g := gs[f.userB]
	if err := save(f.s, &g, "x", "done"); !errs.Is(errs.Unavailable, err) {
		t.Errorf("Save on the closed node = %v, want Unavailable (not Conflict: the driver must not stop)", err)
	}
	// Recovery still finds the live node's orphans.
	got, err := f.s.Expired(ctx, t0.Add(time.Minute), 10)
	if err != nil || !reflect.DeepEqual(claimIDs(got), []string{gs[f.userA].ID}) {
		t.Errorf("Expired with a node closed = %v, %v; want the live node's saga", claimIDs(got), err)
	}
}

// testRestartedHistoryPurged: the history of a saga replaced by Restart
// must not outlive the key: once the saga that replaced it is purged,
// nothing of the key is left.
func testRestartedHistoryPurged(t *testing.T, f *fixture) {
	ctx := context.Background()
	old := mustCreate(t, f.s, newSaga(f.userA, "k"))
	old.State, old.Retryable, old.ExpiresAt = checkout.SagaCancelled, true, t0.Add(24*time.Hour)
	if err := save(f.s, &old, "rollback", "done"); err != nil {
		t.Fatal(err)
	}
	ng := newSaga(f.userA, "k")
	if ok, err := f.s.Restart(ctx, ng); !ok || err != nil {
		t.Fatalf("Restart = %v, %v", ok, err)
	}
	ng.Version = 1
	ng.State, ng.ExpiresAt = checkout.SagaConfirmed, t0.Add(24*time.Hour)
	if err := save(f.s, &ng, "complete_cart", "done"); err != nil {
		t.Fatal(err)
	}
	if n, err := f.s.Purge(ctx, t0.Add(48*time.Hour), 100); n != 1 || err != nil {
		t.Fatalf("Purge = %d, %v; want 1", n, err)
	}
	if h, err := f.s.History(ctx, ng.ID); err != nil || len(h) != 0 {
		t.Errorf("history of the purged saga: %v, %v", h, err)
	}
	if h, err := f.s.History(ctx, old.ID); err == nil && len(h) > 0 {
		t.Errorf("Restart kept %d history rows of the saga it replaced, which nothing could reach or purge", len(h))
	}
}
