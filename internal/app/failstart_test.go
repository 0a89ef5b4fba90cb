package app_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/globomantics/globomantics/internal/app"
	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/testenv"
	"github.com/globomantics/globomantics/internal/worker/mail"
)

// TestFailedStartStopsServing: when start-up fails after the HTTP listener
// opened (here a subscription the broker refuses), Run returns the error and
// leaves nothing behind: the HTTP server no longer accepts connections.
func TestFailedStartStopsServing(t *testing.T) {
	ctx := context.Background()
	natsAddr := testenv.FreeAddr(t)
	b, err := bus.Open(ctx, bus.Options{StoreDir: t.TempDir(), ListenAddr: natsAddr, Name: "broker", Log: testenv.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// Another consumer of the mail worker's jobs: on the work-queue stream
	// the broker refuses the worker's own, whose filter overlaps it.
	nc, err := nats.Connect("nats://" + natsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateConsumer(ctx, bus.JobsStreamName, jetstream.ConsumerConfig{Durable: "not-" + mail.ConsumerName,
		FilterSubjects: mail.Subjects, AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}

	addr := testenv.FreeAddr(t)
	logs := &syncBuffer{}
	args := []string{"globomantics", "serve", "--http-addr", addr, "--data-dir", t.TempDir(),
		"--services", "catalog,mail", "--seed=false", "--nats-url", "nats://" + natsAddr}
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, args, func(string) string { return "" }, &syncBuffer{}, logs) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatalf("Run succeeded with a subscription the broker refuses\n%s", logs)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("Run did not fail\n%s", logs)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatalf("Run returned an error but %s still accepts connections", addr)
	}
}
