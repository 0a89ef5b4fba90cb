package retry

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/platform/errs"
)

func TestBackoffJitterBounds(t *testing.T) {
	p := Policy{Tries: 8, Base: 40 * time.Millisecond, Max: 500 * time.Millisecond}
	for n, d := range map[int]time.Duration{0: 40, 1: 40, 2: 80, 3: 160, 4: 320, 5: 500, 6: 500, 40: 500} {
		d *= time.Millisecond
		lo, hi := d, time.Duration(0)
		for range 2000 {
			b := p.Backoff(n)
			if b < d/2 || b > d {
				t.Fatalf("Backoff(%d) = %v, want within [%v, %v]", n, b, d/2, d)
			}
			lo, hi = min(lo, b), max(hi, b)
		}
		// Jittered: the samples spread over most of the range.
		if hi-lo < d/4 {
			t.Errorf("Backoff(%d) ranged over [%v, %v] only", n, lo, hi)
		}
	}
	if d := (Policy{}).Backoff(3); d != 0 {
		t.Errorf("zero policy: Backoff = %v", d)
	}
	if d := (Policy{Base: time.Second}).Backoff(200); d <= 0 {
		t.Errorf("no Max: Backoff(200) = %v overflowed", d)
	}
	// Default's waits fit the promise of its doc: at most 50, 100, 200 ms.
	for n, d := range []time.Duration{50, 100, 200} {
		if b := Default.Backoff(n + 1); b > d*time.Millisecond {
			t.Errorf("Default.Backoff(%d) = %v", n+1, b)
		}
	}
}

func TestDelayHonoursRetryAfter(t *testing.T) {
	p := Policy{Tries: 4, Base: 10 * time.Millisecond, Max: time.Second}
	hinted := func(d time.Duration) error { return errs.E(errs.Unavailable, errs.RetryAfter(d)) }
	if d := p.Delay(1, hinted(300*time.Millisecond)); d != 300*time.Millisecond {
		t.Errorf("hint 300ms: Delay = %v", d)
	}
	if d := p.Delay(1, hinted(time.Minute)); d != time.Second {
		t.Errorf("hint 1m: Delay = %v, want Max", d)
	}
	if d := p.Delay(1, errs.E(errs.Unavailable)); d > 10*time.Millisecond {
		t.Errorf("no hint: Delay = %v", d)
	}
}

func TestDoStops(t *testing.T) {
	p := Policy{Tries: 5, Base: time.Millisecond, Max: 2 * time.Millisecond}
	transient := errs.E("op", errs.Unavailable)

	t.Run("on success", func(t *testing.T) {
		n := 0
		err := Do(context.Background(), p, func(context.Context) error {
			if n++; n < 3 {
				return transient
			}
			return nil
		})
		if err != nil || n != 3 {
			t.Errorf("err = %v after %d tries", err, n)
		}
	})
	t.Run("on a non-retryable error", func(t *testing.T) {
		n := 0
		final := errs.E("op", errs.Conflict)
		err := Do(context.Background(), p, func(context.Context) error {
			if n++; n < 2 {
				return transient
			}
			return final
		})
		if err != final || n != 2 {
			t.Errorf("err = %v after %d tries, want the Conflict after 2", err, n)
		}
		n = 0
		plain := errors.New("bug")
		if err := Do(context.Background(), p, func(context.Context) error { n++; return plain }); err != plain || n != 1 {
			t.Errorf("plain error: %v after %d tries", err, n)
		}
	})
	t.Run("after Tries", func(t *testing.T) {
		n := 0
		err := Do(context.Background(), p, func(context.Context) error { n++; return transient })
		if err != transient || n != p.Tries {
			t.Errorf("err = %v after %d tries, want %d", err, n, p.Tries)
		}
	})
	t.Run("when ctx ends", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		n := 0
		slow := Policy{Base: time.Hour, Max: time.Hour} // no limit but ctx
		done := make(chan error, 1)
		go func() {
			done <- Do(ctx, slow, func(context.Context) error { n++; return transient })
		}()
		cancel()
		select {
		case err := <-done:
			if err != transient || n != 1 {
				t.Errorf("err = %v after %d tries", err, n)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Do did not return when ctx ended")
		}
	})
	t.Run("when the wait outlasts the deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start := time.Now()
		n := 0
		err := Do(ctx, Policy{Base: time.Minute, Max: time.Minute}, func(context.Context) error { n++; return transient })
		if err != transient || n != 1 || time.Since(start) > 500*time.Millisecond {
			t.Errorf("err = %v after %d tries and %v", err, n, time.Since(start))
		}
	})
}

func TestDoIf(t *testing.T) {
	conflict := errors.New("serialization failure")
	n := 0
	err := DoIf(context.Background(), Policy{Tries: 3, Base: time.Millisecond}, func(err error) bool { return err == conflict },
		func(context.Context) error { n++; return conflict })
	if err != conflict || n != 3 {
		t.Errorf("err = %v after %d tries", err, n)
	}
}

func TestBudget(t *testing.T) {
	now := time.Unix(1000, 0)
	b := NewBudget(0.2, 2)
	b.now = func() time.Time { return now }

	// Full at first: two retries (the floor's second).
	if got := []bool{b.Withdraw(), b.Withdraw(), b.Withdraw()}; !got[0] || !got[1] || got[2] {
		t.Fatalf("a fresh budget of 2/s allowed %v, want exactly two retries", got)
	}
	// Five calls earn one retry.
	for range 4 {
		b.Deposit()
	}
	if b.Withdraw() {
		t.Fatal("four calls earned a retry")
	}
	b.Deposit()
	if !b.Withdraw() || b.Withdraw() {
		t.Fatal("five calls should earn exactly one retry")
	}
	// Time earns the floor, up to one second's worth.
	now = now.Add(500 * time.Millisecond)
	if !b.Withdraw() || b.Withdraw() {
		t.Fatal("half a second at 2/s should earn one retry")
	}
	now = now.Add(time.Hour)
	for range 1000 {
		b.Deposit()
	}
	n := 0
	for b.Withdraw() {
		n++
	}
	if n != 2 {
		t.Errorf("a long-idle budget allowed %d retries, want its cap of 2", n)
	}

	// No floor: deposits alone.
	b = NewBudget(0.5, 0)
	if !b.Withdraw() || b.Withdraw() {
		t.Fatal("a budget without floor should hold one retry at first")
	}
	b.Deposit()
	b.Deposit()
	if !b.Withdraw() {
		t.Fatal("two calls at 0.5 should earn a retry")
	}
}
