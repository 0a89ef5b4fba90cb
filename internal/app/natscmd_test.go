package app_test

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/app"
	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// Three "globomantics nats serve" nodes form a JetStream cluster that the
// shop's bus connects to by their URLs, and an acknowledged publish goes
// through.
func TestNATSServeCluster(t *testing.T) {
	root := t.TempDir()
	clients := []string{testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)}
	routes := []string{testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)}
	var routeURLs []string
	for _, r := range routes {
		routeURLs = append(routeURLs, "nats://"+r)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 3)
	for i := range 3 {
		args := []string{"globomantics", "nats", "serve", "--name", fmt.Sprintf("n%d", i+1), "--listen", clients[i],
			"--cluster", routes[i], "--routes", strings.Join(routeURLs, ","), "--store-dir", filepath.Join(root, fmt.Sprintf("n%d", i+1))}
		go func() { done <- app.Run(ctx, args, func(string) string { return "" }, io.Discard, io.Discard) }()
	}
	t.Cleanup(func() {
		cancel()
		for range 3 {
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("nats serve: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Error("a node did not stop")
			}
		}
	})
	var urls []string
	for _, c := range clients {
		urls = append(urls, "nats://"+c)
	}
	octx, ocancel := context.WithTimeout(ctx, 30*time.Second)
	defer ocancel()
	var b *bus.Bus
	testenv.CheckFor(t, 30*time.Second, func() error {
		var err error
		b, err = bus.Open(octx, bus.Options{URL: strings.Join(urls, ","), Log: testenv.Logger(t)})
		return err
	})
	defer b.Close()
	if err := b.Publish(octx, "globo.test.cluster", "cluster-1", map[string]string{"hello": "cluster"}); err != nil {
		t.Fatalf("publish to the cluster: %v", err)
	}
}
