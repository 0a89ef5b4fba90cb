package cartdb_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/cart"
	"github.com/globomantics/globomantics/internal/cart/cartdb"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func line(id string, qty int, cents int64, after time.Duration) cart.Line {
	return cart.Line{ProductID: id, Name: "Product " + id, Quantity: qty, UnitPrice: money.USD(cents), AddedAt: t0.Add(after)}
}

func TestStore(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			db := b.Open(t)
			s, err := cartdb.Open(context.Background(), db)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := cartdb.Open(context.Background(), db); err != nil {
				t.Fatalf("second Open: %v", err)
			}
			t.Run("Update", func(t *testing.T) { testUpdate(t, s, db) })
			t.Run("Rollback", func(t *testing.T) { testRollback(t, s) })
			t.Run("UpdatePair", func(t *testing.T) { testUpdatePair(t, s) })
			t.Run("Concurrent", func(t *testing.T) { testConcurrent(t, s) })
		})
	}
}

func get(t *testing.T, s *cartdb.Store, owner string) cart.Lines {
	t.Helper()
	ls, err := s.Get(context.Background(), owner)
	if err != nil {
		t.Fatalf("Get(%q): %v", owner, err)
	}
	return ls
}

func equal(a, b cart.Lines) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].ProductID != b[i].ProductID || a[i].Name != b[i].Name || a[i].Quantity != b[i].Quantity ||
			a[i].UnitPrice != b[i].UnitPrice || !a[i].AddedAt.Equal(b[i].AddedAt) {
			return false
		}
	}
	return true
}

func wantLines(t *testing.T, s *cartdb.Store, owner string, want cart.Lines) {
	t.Helper()
	if got := get(t, s, owner); !equal(got, want) {
		t.Errorf("lines of %q:\n got  %+v\n want %+v", owner, got, want)
	}
}

func set(lines cart.Lines) func(*cart.Lines) error {
	return func(ls *cart.Lines) error { *ls = append(cart.Lines(nil), lines...); return nil }
}

func testUpdate(t *testing.T, s *cartdb.Store, db *sqldb.DB) {
	ctx := context.Background()
	if ls := get(t, s, "user:new"); len(ls) != 0 {
		t.Fatalf("unknown owner has lines %+v", ls)
	}
	a, b, c := line("a", 1, 250, 2*time.Millisecond), line("b", 2, 1999, 0), line("c", 3, 5, time.Millisecond)
	if err := s.Update(ctx, "user:1", set(cart.Lines{a, b, c})); err != nil {
		t.Fatal(err)
	}
	// Lines come back ordered by when they were added, fields intact.
	wantLines(t, s, "user:1", cart.Lines{b, c, a})

	// fn sees the current lines in order.
	var seen cart.Lines
	b.Quantity, b.Name, b.UnitPrice = 7, "Renamed", money.USD(1)
	err := s.Update(ctx, "user:1", func(ls *cart.Lines) error {
		seen = append(seen, *ls...)
		*ls = cart.Lines{c, b} // a removed, b changed, c as it was
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !equal(seen, cart.Lines{line("b", 2, 1999, 0), c, a}) {
		t.Errorf("fn saw %+v", seen)
	}
	wantLines(t, s, "user:1", cart.Lines{b, c})
	wantLines(t, s, "user:2", nil) // owners are separate

	// An emptied cart leaves no rows behind.
	if err := s.Update(ctx, "user:1", set(nil)); err != nil {
		t.Fatal(err)
	}
	wantLines(t, s, "user:1", nil)
	var n int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM carts WHERE owner = ?`, "user:1").Scan(&n); err != nil || n != 0 {
		t.Errorf("carts rows for emptied cart = %d, %v", n, err)
	}

	if err := s.Update(ctx, "user:3", set(cart.Lines{a, b})); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "user:3"); err != nil {
		t.Fatal(err)
	}
	wantLines(t, s, "user:3", nil)
	if err := s.Delete(ctx, "user:3"); err != nil {
		t.Errorf("deleting an absent cart: %v", err)
	}
}

func testRollback(t *testing.T, s *cartdb.Store) {
	ctx := context.Background()
	base := cart.Lines{line("a", 1, 100, 0), line("b", 2, 200, time.Millisecond)}
	if err := s.Update(ctx, "anon:rb", set(base)); err != nil {
		t.Fatal(err)
	}
	// The domain's error comes back unchanged, and nothing is written.
	sentinel := errors.New("rule broken")
	err := s.Update(ctx, "anon:rb", func(ls *cart.Lines) error {
		(*ls)[0].Quantity = 50
		*ls = append(*ls, line("c", 1, 1, time.Hour))
		return sentinel
	})
	if err != sentinel {
		t.Errorf("Update returned %v, want the fn's error itself", err)
	}
	wantLines(t, s, "anon:rb", base)

	// Lines the store cannot keep fail the whole update, even after other
	// lines were written.
	for name, bad := range map[string]cart.Lines{
		"duplicate product": {line("z", 1, 1, 0), line("a", 5, 100, 0), line("a", 1, 100, 0)},
		"zero quantity":     {line("z", 1, 1, 0), line("a", 0, 100, 0)},
	} {
		if err := s.Update(ctx, "anon:rb", set(bad)); err == nil {
			t.Errorf("%s: accepted", name)
		}
		wantLines(t, s, "anon:rb", base)
	}
}

func testUpdatePair(t *testing.T, s *cartdb.Store) {
	ctx := context.Background()
	from := cart.Lines{line("a", 1, 100, 0)}
	to := cart.Lines{line("b", 1, 200, 0)}
	if err := s.Update(ctx, "anon:p", set(from)); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(ctx, "user:p", set(to)); err != nil {
		t.Fatal(err)
	}
	// A failure writing the second cart undoes the first.
	err := s.UpdatePair(ctx, "anon:p", "user:p", func(a, b *cart.Lines) error {
		*a = nil
		*b = cart.Lines{line("b", 1, 200, 0), line("b", 1, 200, 0)}
		return nil
	})
	if err == nil {
		t.Fatal("pair update with a bad second cart succeeded")
	}
	wantLines(t, s, "anon:p", from)
	wantLines(t, s, "user:p", to)

	sentinel := errors.New("no")
	if err := s.UpdatePair(ctx, "anon:p", "user:p", func(a, b *cart.Lines) error { *a = nil; return sentinel }); err != sentinel {
		t.Errorf("UpdatePair returned %v, want the fn's error", err)
	}
	wantLines(t, s, "anon:p", from)

	err = s.UpdatePair(ctx, "anon:p", "user:p", func(a, b *cart.Lines) error {
		if !equal(*a, from) || !equal(*b, to) {
			t.Errorf("fn saw %+v, %+v", *a, *b)
		}
		*b = append(*b, (*a)...)
		*a = nil
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	wantLines(t, s, "anon:p", nil)
	wantLines(t, s, "user:p", cart.Lines{from[0], to[0]})

	if err := s.UpdatePair(ctx, "x", "x", func(a, b *cart.Lines) error { return nil }); err == nil {
		t.Error("UpdatePair of an owner with itself accepted")
	}
}

// Concurrent read-modify-write updates of one cart never lose an update, and
// pair updates in opposite directions neither deadlock nor lose quantities.
func testConcurrent(t *testing.T, s *cartdb.Store) {
	ctx := context.Background()
	const workers, rounds = 6, 5
	inc := func(ls *cart.Lines) error {
		if len(*ls) == 0 {
			*ls = cart.Lines{line("p", 1, 100, 0)}
		} else {
			(*ls)[0].Quantity++
		}
		return nil
	}
	// move shifts one unit of p from a to b.
	move := func(a, b *cart.Lines) error {
		if len(*a) == 0 {
			return nil
		}
		if (*a)[0].Quantity--; (*a)[0].Quantity == 0 {
			*a = nil
		}
		if len(*b) == 0 {
			*b = cart.Lines{line("p", 1, 100, 0)}
		} else {
			(*b)[0].Quantity++
		}
		return nil
	}
	var wg sync.WaitGroup
	errc := make(chan error, 3*workers*rounds)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				errc <- s.Update(ctx, "user:c", inc)
				if w%2 == 0 {
					errc <- s.UpdatePair(ctx, "user:c", "anon:c", move)
				} else {
					errc <- s.UpdatePair(ctx, "anon:c", "user:c", move)
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			t.Fatal(err)
		}
	}
	total := 0
	for _, o := range []string{"user:c", "anon:c"} {
		for _, l := range get(t, s, o) {
			total += l.Quantity
		}
	}
	if total != workers*rounds {
		t.Errorf("total quantity = %d, want %d", total, workers*rounds)
	}
}
