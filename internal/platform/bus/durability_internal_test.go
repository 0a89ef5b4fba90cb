package bus

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// StreamConfigForTest exposes streamConfig so that a test can create a stream
// exactly as Open would.
var StreamConfigForTest = streamConfig

func TestEmbeddedServerSyncsAlways(t *testing.T) {
	b, err := Open(context.Background(), Options{StoreDir: t.TempDir(), Name: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if cfg := b.ns.JetStreamConfig(); cfg == nil || !cfg.SyncAlways {
		t.Fatalf("embedded JetStream config %+v: want SyncAlways", cfg)
	}
	for _, s := range Streams() {
		st, err := b.js.Stream(context.Background(), s.Name)
		if err != nil {
			t.Fatal(err)
		}
		want := jetstream.DefaultPersistMode
		if s.Persistence == Buffered {
			want = jetstream.AsyncPersistMode
		}
		if got := st.CachedInfo().Config.PersistMode; got != want {
			t.Errorf("stream %s (%v) has persist mode %v, want %v", s.Name, s.Persistence, got, want)
		}
	}
}

func TestEventStreamIsSynced(t *testing.T) {
	for _, s := range Streams() {
		if s.Name == StreamName && s.Persistence != Synced {
			t.Fatalf("%s is %v: orders and payments must be synced before the ack", s.Name, s.Persistence)
		}
	}
	if cfg := streamConfig(StreamSpec{Name: "A", Persistence: Buffered}); cfg.PersistMode != jetstream.AsyncPersistMode {
		t.Errorf("a Buffered stream gets persist mode %v, want async", cfg.PersistMode)
	}
	if cfg := streamConfig(StreamSpec{Name: "B", Persistence: Synced}); cfg.PersistMode != jetstream.DefaultPersistMode {
		t.Errorf("a Synced stream gets persist mode %v, want default", cfg.PersistMode)
	}
}

// benchBroker starts an in-process JetStream server, with the bus's
// durability (sync_interval: always) or with the server's default (a
// background fsync every two minutes), and creates one stream with the given
// persistence on it.
func benchBroker(b *testing.B, syncAlways bool, p Persistence) jetstream.JetStream {
	b.Helper()
	opts := &server.Options{JetStream: true, StoreDir: b.TempDir(), NoSigs: true, NoLog: true, DontListen: true}
	if syncAlways {
		durableServer(opts)
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		b.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		b.Fatal("server did not start")
	}
	b.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	nc, err := nats.Connect(ns.ClientURL(), nats.InProcessServer(ns))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(256))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := js.CreateStream(context.Background(), streamConfig(StreamSpec{Name: "BENCH", Subjects: []string{"bench.>"}, Persistence: p})); err != nil {
		b.Fatal(err)
	}
	return js
}

// BenchmarkPublishAck measures what syncing before the ack costs: ns/op of
// the "ack" benchmarks is one publish's round trip to its acknowledgement,
// one at a time (what the outbox relay waits for per row); msgs/s of the
// "async" ones is the throughput with up to 256 publishes in flight.
//
//	go test -run '^$' -bench PublishAck -benchtime 2s ./internal/platform/bus
func BenchmarkPublishAck(b *testing.B) {
	payload := bytes.Repeat([]byte("x"), 400) // about one event envelope
	for _, v := range []struct {
		name       string
		syncAlways bool
		p          Persistence
	}{
		{"synced", true, Synced},            // GLOBO as configured now
		{"server-default", false, Synced},   // GLOBO before this change
		{"buffered-stream", true, Buffered}, // a fire-and-forget stream on the synced server
	} {
		b.Run(v.name+"/ack", func(b *testing.B) {
			js := benchBroker(b, v.syncAlways, v.p)
			ctx := context.Background()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := js.Publish(ctx, "bench.x", payload, jetstream.WithMsgID(fmt.Sprint(i))); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(v.name+"/async", func(b *testing.B) {
			js := benchBroker(b, v.syncAlways, v.p)
			start := time.Now()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := js.PublishAsync("bench.x", payload, jetstream.WithMsgID(fmt.Sprint(i)), jetstream.WithStallWait(10*time.Second)); err != nil {
					b.Fatal(err)
				}
			}
			select {
			case <-js.PublishAsyncComplete():
			case <-time.After(time.Minute):
				b.Fatal("async publishes not acknowledged within a minute")
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
		})
	}
}
