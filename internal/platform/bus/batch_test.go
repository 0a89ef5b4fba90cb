package bus_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// TestPublishBatch: a batch goes out with the event id as Nats-Msg-Id, the
// change's time and trace context as headers and in the envelope; a
// message already in the stream is acknowledged and not stored twice; a
// message that can never be published fails alone, as Invalid.
func TestPublishBatch(t *testing.T) {
	b, addr := embedded(t, t.TempDir())
	nc, err := nats.Connect("nats://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	wire := make(chan *nats.Msg, 16)
	if _, err := nc.ChanSubscribe("globo.batch.>", wire); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	if err := b.Subscribe(context.Background(), "batch", []string{"globo.batch.>"}, rec.handle); err != nil {
		t.Fatal(err)
	}
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	at := time.Date(2025, 1, 2, 3, 4, 5, 6e6, time.UTC)
	msgs := []bus.Message{
		{Subject: "globo.batch.a", ID: "m1", Data: json.RawMessage(`{"n":1}`), OccurredAt: at, Traceparent: tp},
		{Subject: "globo.batch.a", ID: "m2", Data: json.RawMessage(`{"n":2}`), OccurredAt: at.Add(time.Second)},
		{Subject: "globo.batch.a", ID: "bad", Data: json.RawMessage(`{not json`)},
		{Subject: "globo.batch.a", ID: "m1", Data: json.RawMessage(`{"n":1}`), OccurredAt: at, Traceparent: tp}, // a retry
	}
	res := b.PublishBatch(context.Background(), msgs)
	if len(res) != 4 || res[0] != nil || res[1] != nil || !errs.Is(errs.Invalid, res[2]) || res[3] != nil {
		t.Fatalf("PublishBatch = %v; want nil, nil, Invalid, nil", res)
	}
	for i, want := range []struct{ id, occurred, tp string }{
		{"m1", "2025-01-02T03:04:05.006Z", tp},
		{"m2", "2025-01-02T03:04:06.006Z", ""},
		{"m1", "2025-01-02T03:04:05.006Z", tp},
	} {
		select {
		case m := <-wire:
			h := m.Header
			if h.Get(nats.MsgIdHdr) != want.id || h.Get(bus.HeaderOccurredAt) != want.occurred || h.Get(bus.HeaderTraceparent) != want.tp {
				t.Errorf("message %d headers %v, want id %s, occurred %s, traceparent %q", i, h, want.id, want.occurred, want.tp)
			}
		case <-time.After(wait):
			t.Fatalf("message %d never seen on the wire", i)
		}
	}
	if err := b.Publish(context.Background(), "globo.batch.end", "end", 0); err != nil {
		t.Fatal(err)
	}
	rec.has(t, 3)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if got := fmt.Sprint(rec.count); got != "map[end:1 m1:1 m2:1]" {
		t.Fatalf("consumer handled %s", got)
	}
	if ev := rec.events[0]; ev.ID != "m1" || !ev.Time.Equal(at) || ev.Traceparent != tp || string(ev.Data) != `{"n":1}` {
		t.Errorf("consumer saw %+v", ev)
	}
}

// TestPublishBatchBrokerGone: with the broker gone, every message fails as
// Unavailable within the context's deadline.
func TestPublishBatchBrokerGone(t *testing.T) {
	srv, addr := embedded(t, t.TempDir())
	client, err := bus.Open(context.Background(), bus.Options{URL: "nats://" + addr, Name: "client", Log: testenv.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	res := client.PublishBatch(ctx, []bus.Message{
		{Subject: "globo.batch.a", ID: "x1", Data: json.RawMessage(`1`)},
		{Subject: "globo.batch.a", ID: "x2", Data: json.RawMessage(`2`)},
	})
	for i, err := range res {
		if !errs.Is(errs.Unavailable, err) {
			t.Errorf("message %d: %v, want Unavailable", i, err)
		}
	}
}

// TestTraceparentContext: only a well-formed W3C traceparent is carried.
func TestTraceparentContext(t *testing.T) {
	ctx := context.Background()
	good := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	if got := bus.TraceparentFrom(bus.WithTraceparent(ctx, good)); got != good {
		t.Errorf("TraceparentFrom = %q", got)
	}
	for _, bad := range []string{"", "nonsense", "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"} {
		if got := bus.TraceparentFrom(bus.WithTraceparent(ctx, bad)); got != "" {
			t.Errorf("%q carried as %q", bad, got)
		}
	}
}
