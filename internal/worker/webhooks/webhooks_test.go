package webhooks_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/partner"
	"github.com/globomantics/globomantics/internal/partner/partnerdb"
	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/testenv"
	"github.com/globomantics/globomantics/internal/worker/webhooks"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// receiver is a partner's webhook endpoint: it answers each request with
// the next of answers (the last repeats), after delay, and keeps what it
// got.
type receiver struct {
	mu      sync.Mutex
	answers []int
	delay   time.Duration
	got     []request
	srv     *httptest.Server
	secret  string
}

type request struct {
	header http.Header
	body   []byte
	valid  error
}

func newReceiver(t *testing.T, delay time.Duration, answers ...int) *receiver {
	r := &receiver{answers: answers, delay: delay}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		n := len(r.got)
		r.got = append(r.got, request{header: req.Header.Clone(), body: body,
			valid: partner.Verify(r.secret, req.Header, body, time.Now(), 5*time.Minute)})
		code := r.answers[min(n, len(r.answers)-1)]
		r.mu.Unlock()
		if r.delay > 0 {
			select {
			case <-time.After(r.delay):
			case <-req.Context().Done():
			}
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) requests() []request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]request(nil), r.got...)
}

type env struct {
	svc  *partner.Service
	st   *partnerdb.Store
	pid  string
	prod string
	n    int
}

// newEnv is a partner service on SQLite with one partner, whose webhooks
// go to url, owning one listed product.
func newEnv(t *testing.T, url string, opts ...partner.Option) (*env, string) {
	t.Helper()
	ctx := context.Background()
	st, err := partnerdb.Open(ctx, testenv.SQLite(t))
	if err != nil {
		t.Fatal(err)
	}
	// Recording sales and deliveries needs no catalog.
	svc := partner.NewService(st, nil, nil, clock.Real{}, opts...)
	c, err := svc.Create(ctx, "Acme", url)
	if err != nil {
		t.Fatal(err)
	}
	disp, _ := svc.SetWebhook(ctx, c.Partner.ID, url)
	e := &env{svc: svc, st: st, pid: c.Partner.ID, prod: "prd_lamp"}
	if err := st.CreateProduct(ctx, partner.ProductRecord{PartnerID: e.pid, Product: partner.Product{
		ID: "pl_lamp", ProductID: e.prod, Status: partner.ProductListed, Name: "Lamp", Category: "home", Price: money.USD(100), CreatedAt: time.Now(),
	}}); err != nil {
		t.Fatal(err)
	}
	return e, disp.Secret
}

// sell records an order of the partner's product and returns its webhook
// job, as the outbox would publish it.
func (e *env) sell(t *testing.T) bus.Event {
	t.Helper()
	e.n++
	order := fmt.Sprintf("ord_%d", e.n)
	data, _ := json.Marshal(map[string]any{"order": map[string]any{"id": order, "updated_at": time.Now(),
		"items": []map[string]any{{"product_id": e.prod, "quantity": 1, "line_total": money.USD(100)}}}})
	if err := e.svc.Handle(context.Background(), bus.Event{ID: order, Type: partner.SubjectOrderPlaced, Data: data}); err != nil {
		t.Fatal(err)
	}
	ds, err := e.svc.Deliveries(context.Background(), e.pid, 1)
	if err != nil || len(ds) != 1 {
		t.Fatalf("Deliveries = %v, %v", ds, err)
	}
	job, _ := json.Marshal(partner.WebhookRequested{DeliveryID: ds[0].ID, PartnerID: e.pid, EventType: ds[0].EventType, RequestedAt: time.Now()})
	return bus.Event{ID: ds[0].ID, Type: partner.SubjectWebhookJob, Data: job}
}

func (e *env) delivery(t *testing.T, id string) partner.Delivery {
	t.Helper()
	d, err := e.st.Delivery(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestRetriedThenDelivered(t *testing.T) {
	r := newReceiver(t, 0, 500, 200)
	e, secret := newEnv(t, r.srv.URL)
	r.secret = secret
	w := webhooks.New(e.svc, clock.Real{}, nil)
	job := e.sell(t)
	ctx := context.Background()
	if err := w.Handle(ctx, job); !errors.Is(err, webhooks.ErrRetry) {
		t.Fatalf("Handle after a 500 = %v, want ErrRetry (the bus redelivers)", err)
	}
	if d := e.delivery(t, job.ID); d.Status != partner.StatusPending || d.Attempts != 1 || d.LastStatusCode != 500 {
		t.Fatalf("after a 500: %+v", d)
	}
	if err := w.Handle(ctx, job); err != nil {
		t.Fatalf("Handle after a 200 = %v", err)
	}
	if d := e.delivery(t, job.ID); d.Status != partner.StatusDelivered || d.Attempts != 2 || d.LastStatusCode != 200 {
		t.Fatalf("after a 200: %+v", d)
	}
	// A redelivered job of a delivered webhook sends nothing.
	if err := w.Handle(ctx, job); err != nil {
		t.Fatal(err)
	}
	got := r.requests()
	if len(got) != 2 {
		t.Fatalf("receiver got %d requests, want 2", len(got))
	}
	for _, g := range got {
		if g.valid != nil || g.header.Get(partner.HeaderID) != job.ID || g.header.Get("Content-Type") != "application/json" {
			t.Errorf("request: signature %v, id %q, type %q", g.valid, g.header.Get(partner.HeaderID), g.header.Get("Content-Type"))
		}
		var b partner.WebhookBody
		if err := json.Unmarshal(g.body, &b); err != nil || b.ID != job.ID || b.Type != partner.EventItemSold {
			t.Errorf("body %s: %v", g.body, err)
		}
	}
}

func TestRefused(t *testing.T) {
	r := newReceiver(t, 0, 400)
	e, secret := newEnv(t, r.srv.URL)
	r.secret = secret
	w := webhooks.New(e.svc, clock.Real{}, nil)
	job := e.sell(t)
	if err := w.Handle(context.Background(), job); err != nil {
		t.Fatalf("Handle after a 400 = %v, want nil (acked, not retried, not a dead letter)", err)
	}
	if d := e.delivery(t, job.ID); d.Status != partner.StatusRefused || d.Attempts != 1 || d.LastStatusCode != 400 {
		t.Fatalf("after a 400: %+v", d)
	}
	if err := w.Handle(context.Background(), job); err != nil || len(r.requests()) != 1 {
		t.Fatalf("a refused delivery was sent again: %v, %d requests", err, len(r.requests()))
	}
}

func TestTimeoutRetriedUntilFailed(t *testing.T) {
	r := newReceiver(t, 2*time.Second, 200)
	e, secret := newEnv(t, r.srv.URL, partner.WithMaxAttempts(2))
	r.secret = secret
	w := webhooks.New(e.svc, clock.Real{}, nil, webhooks.WithTimeout(150*time.Millisecond))
	job := e.sell(t)
	ctx := context.Background()
	start := time.Now()
	if err := w.Handle(ctx, job); !errors.Is(err, webhooks.ErrRetry) {
		t.Fatalf("Handle after a timeout = %v, want ErrRetry", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("the attempt took %v: the timeout did not cut it", took)
	}
	d := e.delivery(t, job.ID)
	if d.Status != partner.StatusPending || d.LastError != "timed out" || d.LastStatusCode != 0 || d.NextAttemptAt == nil {
		t.Fatalf("after a timeout: %+v", d)
	}
	if err := w.Handle(ctx, job); err != nil {
		t.Fatalf("Handle at the last attempt = %v, want nil (failed for good, acked)", err)
	}
	if d := e.delivery(t, job.ID); d.Status != partner.StatusFailed || d.Attempts != 2 {
		t.Fatalf("after the last timeout: %+v", d)
	}
}

func TestConnectionRefusedRetried(t *testing.T) {
	r := newReceiver(t, 0, 200)
	url := r.srv.URL
	r.srv.Close() // nothing listens there any more
	e, _ := newEnv(t, url)
	w := webhooks.New(e.svc, clock.Real{}, nil)
	job := e.sell(t)
	if err := w.Handle(context.Background(), job); !errors.Is(err, webhooks.ErrRetry) {
		t.Fatalf("Handle with the receiver down = %v, want ErrRetry", err)
	}
	if d := e.delivery(t, job.ID); d.Status != partner.StatusPending || d.LastError == "" {
		t.Fatalf("after a refused connection: %+v", d)
	}
	if err := w.Handle(context.Background(), bus.Event{ID: "j", Type: partner.SubjectWebhookJob, Data: json.RawMessage(`{"delivery_id":"whd_nope"}`)}); !bus.IsPermanent(err) {
		t.Fatalf("a job of no delivery = %v, want a permanent failure", err)
	}
}

// TestThroughTheBus runs two workers on the real broker's work queue: the
// job answered 500 then 200 is redelivered by the bus after its back-off
// and delivered once; each of several jobs is delivered exactly once
// between the two workers.
func TestThroughTheBus(t *testing.T) {
	r := newReceiver(t, 0, 500, 200, 200, 200, 200)
	e, secret := newEnv(t, r.srv.URL)
	r.secret = secret
	b := testenv.Bus(t)
	ctx := context.Background()
	for i := range 2 {
		w := webhooks.New(e.svc, clock.Real{}, nil)
		if err := b.Subscribe(ctx, webhooks.ConsumerName, webhooks.Subjects, w.Handle); err != nil {
			t.Fatalf("worker %d: %v", i, err)
		}
	}
	var jobs []bus.Event
	for range 3 {
		j := e.sell(t)
		jobs = append(jobs, j)
		var req partner.WebhookRequested
		_ = json.Unmarshal(j.Data, &req)
		if err := b.Publish(ctx, partner.SubjectWebhookJob, j.ID, req); err != nil {
			t.Fatal(err)
		}
	}
	testenv.CheckFor(t, 20*time.Second, func() error {
		for _, j := range jobs {
			if d := e.delivery(t, j.ID); d.Status != partner.StatusDelivered {
				return fmt.Errorf("delivery %s: %s after %d attempts", j.ID, d.Status, d.Attempts)
			}
		}
		return nil
	})
	per := map[string]int{}
	for _, g := range r.requests() {
		per[g.header.Get(partner.HeaderID)]++
		if g.valid != nil {
			t.Errorf("bad signature: %v", g.valid)
		}
	}
	total := 0
	for _, j := range jobs {
		total += per[j.ID]
		if per[j.ID] < 1 || per[j.ID] > 2 {
			t.Errorf("delivery %s sent %d times", j.ID, per[j.ID])
		}
	}
	if total != 4 { // one 500, then each delivered once
		t.Errorf("%d requests in all, want 4: %v", total, per)
	}
}

// TestSpecialAddressesRefused: a webhook URL pointing at a link-local
// address (a cloud metadata service) is never dialled.
func TestSpecialAddressesRefused(t *testing.T) {
	e, _ := newEnv(t, "http://169.254.169.254/latest/meta-data")
	w := webhooks.New(e.svc, clock.Real{}, nil)
	job := e.sell(t)
	if err := w.Handle(context.Background(), job); !errors.Is(err, webhooks.ErrRetry) {
		t.Fatalf("Handle = %v, want ErrRetry", err)
	}
	if d := e.delivery(t, job.ID); !strings.Contains(d.LastError, "not allowed") {
		t.Fatalf("delivery %+v: want the address refused", d)
	}
}
