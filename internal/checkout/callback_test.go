package checkout_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/checkout"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// hook is a callback receiver that fails its first fails deliveries.
type hook struct {
	srv   *httptest.Server
	mu    sync.Mutex
	fails int
	got   []delivery
}

type delivery struct {
	body           []byte
	sig, id, ctype string
	status         int
}

func newHook(t *testing.T, fails int) *hook {
	h := &hook{fails: fails}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		d := delivery{body: b, sig: r.Header.Get(checkout.SignatureHeader), id: r.Header.Get(checkout.DeliveryHeader),
			ctype: r.Header.Get("Content-Type"), status: http.StatusOK}
		if r.Method != http.MethodPost {
			d.status = http.StatusMethodNotAllowed
		} else if len(h.got) < h.fails {
			d.status = http.StatusInternalServerError
		}
		h.got = append(h.got, d)
		w.WriteHeader(d.status)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hook) deliveries() []delivery {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]delivery(nil), h.got...)
}

// verify checks a delivery's signature as a receiver would.
func verify(secret []byte, d delivery) error {
	ts, v1, ok := strings.Cut(d.sig, ",v1=")
	if !ok || !strings.HasPrefix(ts, "t=") || len(v1) != 64 {
		return fmt.Errorf("malformed signature %q", d.sig)
	}
	sec, err := strconv.ParseInt(strings.TrimPrefix(ts, "t="), 10, 64)
	if err != nil {
		return err
	}
	at := time.Unix(sec, 0)
	if time.Since(at) > time.Minute || time.Until(at) > time.Minute {
		return fmt.Errorf("signature time %v is not now", at)
	}
	if want := checkout.Sign(secret, d.body, at); want != d.sig {
		return fmt.Errorf("signature %q, want %q", d.sig, want)
	}
	return nil
}

// TestCallbacks: the final state of a checkout is POSTed, signed, to its
// callback URL, retried until the receiver accepts it.
func TestCallbacks(t *testing.T) {
	t.Parallel()
	w := newWorld(t, config{})
	w.run(w.svc)
	ctx := context.Background()
	secret := []byte("test-secret")

	// Confirmed: the receiver fails twice, then accepts.
	h := newHook(t, 2)
	c := w.customer("hooked", map[string]int{widget: 1})
	r := request(goodCard)
	r.CallbackURL = h.srv.URL + "/hooks/checkout?shop=1"
	res, err := w.svc.PlaceOrder(ctx, c, "k", r)
	if err != nil || res.State != checkout.StateConfirmed {
		t.Fatalf("PlaceOrder = %+v, %v", res, err)
	}
	if res.Callback == nil || res.Callback.URL != r.CallbackURL {
		t.Fatalf("result's callback = %+v", res.Callback)
	}
	id := res.Order.ID
	// The first try fails: the callback stays pending, tried again within
	// the retry policy's first back-off (1 to 2 s).
	var g checkout.Saga
	testenv.CheckFor(t, 5*time.Second, func() error {
		g = w.saga(c, "k")
		if g.Callback.Attempts < 1 {
			return fmt.Errorf("callback %+v", g.Callback)
		}
		return nil
	})
	if g.Callback.Attempts == 1 {
		if g.Callback.State != checkout.CallbackPending || !strings.Contains(g.Callback.LastError, "500") ||
			g.Callback.NextAt.Sub(g.UpdatedAt) < 900*time.Millisecond || time.Until(g.Callback.NextAt) > 2*time.Second {
			t.Errorf("after a failed try: %+v (finished at %v)", g.Callback, g.UpdatedAt)
		}
	}
	// The second try comes by itself.
	testenv.CheckFor(t, 5*time.Second, func() error {
		g = w.saga(c, "k")
		if g.Callback.Attempts < 2 {
			return fmt.Errorf("callback %+v", g.Callback)
		}
		return nil
	})
	if g.Callback.State != checkout.CallbackPending || g.Callback.Attempts != 2 {
		t.Fatalf("after two failed tries: %+v", g.Callback)
	}
	// The third is due in 2 to 4 s: bring it forward.
	cb := g.Callback
	cb.NextAt = time.Now()
	must(t, w.raw.SaveCallback(ctx, id, cb))
	var final checkout.Result
	testenv.CheckFor(t, 5*time.Second, func() error {
		var err error
		final, err = w.svc.Checkout(ctx, c.UserID, "k")
		if err != nil {
			return err
		}
		if final.Callback == nil || final.Callback.State != checkout.CallbackDelivered {
			return fmt.Errorf("callback %+v", final.Callback)
		}
		return nil
	})
	if cb := final.Callback; cb.Attempts != 3 || cb.LastError != "" || !cb.NextAt.IsZero() {
		t.Errorf("delivered callback: %+v", cb)
	}
	ds := h.deliveries()
	if len(ds) != 3 {
		t.Fatalf("%d deliveries, want 3", len(ds))
	}
	for i, d := range ds {
		if d.id != fmt.Sprintf("%s/%d", id, i+1) {
			t.Errorf("delivery %d: %s %q", i, checkout.DeliveryHeader, d.id)
		}
		if err := verify(secret, d); err != nil {
			t.Errorf("delivery %d: %v", i, err)
		}
		if verify([]byte("other-secret"), d) == nil {
			t.Errorf("delivery %d verifies with another secret", i)
		}
		if d.ctype != "application/json" {
			t.Errorf("delivery %d: Content-Type %q", i, d.ctype)
		}
		var ev checkout.CallbackEvent
		if err := json.Unmarshal(d.body, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Type != "checkout.confirmed" || ev.Key != "k" || ev.OrderID != id || ev.State != checkout.SagaConfirmed ||
			ev.Total != final.Order.Total || ev.Error != nil {
			t.Errorf("delivery %d: event %+v", i, ev)
		}
	}
	if due, err := w.raw.DueCallbacks(ctx, time.Now().Add(48*time.Hour), 10); err != nil || len(due) != 0 {
		t.Errorf("callbacks still due after delivery: %d, %v", len(due), err)
	}

	// Cancelled: the event carries the error.
	h2 := newHook(t, 0)
	c2 := w.customer("hooked2", map[string]int{gadget: 1})
	r2 := request(declinedCard)
	r2.CallbackURL = h2.srv.URL
	if _, err := w.svc.PlaceOrder(ctx, c2, "k", r2); !errs.Is(errs.Declined, err) {
		t.Fatalf("PlaceOrder = %v, want Declined", err)
	}
	testenv.CheckFor(t, 5*time.Second, func() error {
		res, err := w.svc.Checkout(ctx, c2.UserID, "k")
		if err != nil {
			return err
		}
		if res.Callback == nil || res.Callback.State != checkout.CallbackDelivered || res.Callback.Attempts != 1 {
			return fmt.Errorf("callback %+v", res.Callback)
		}
		return nil
	})
	ds2 := h2.deliveries()
	if len(ds2) != 1 {
		t.Fatalf("%d deliveries, want 1", len(ds2))
	}
	var ev checkout.CallbackEvent
	must(t, json.Unmarshal(ds2[0].body, &ev))
	if ev.Type != "checkout.cancelled" || ev.State != checkout.SagaCancelled || ev.Error == nil || ev.Error.Status != errs.Declined.Status() {
		t.Errorf("cancelled event %+v", ev)
	}
	if err := verify(secret, ds2[0]); err != nil {
		t.Error(err)
	}
	w.checkInvariants()
}
