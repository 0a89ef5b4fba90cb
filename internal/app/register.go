package app

import (
	"context"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/globomantics/globomantics/internal/config"
	"github.com/globomantics/globomantics/internal/edge"
)

// heartbeatEvery is how often a process renews its registrations at the
// edge; the edge forgets an instance after three missed heartbeats.
const heartbeatEvery = time.Second

// registrations are this process's entries in an edge's registry: the
// storefront (pool "storefront", the public URL) and each service with an
// internal API (pool "<service>", the internal URL).
func (a *app) registrations() map[string]string {
	out := map[string]string{}
	if a.cfg.Runs(config.Storefront) {
		out[config.Storefront] = advertised(a.cfg.Advertise, a.addrs["public"])
	}
	for _, c := range a.plan.local {
		if c.remote != nil { // it has an internal API
			out[c.name] = advertised(a.cfg.AdvertiseInternal, a.addrs["internal"])
		}
	}
	return out
}

// advertised is the configured URL, else http://<addr bound>.
func advertised(configured, bound string) string {
	if configured != "" {
		return strings.TrimRight(configured, "/")
	}
	host, port, _ := net.SplitHostPort(bound)
	return "http://" + net.JoinHostPort(host, port)
}

// register keeps this process registered at the edge's registry until the
// returned function is called; that function deregisters every entry (so
// the edge stops sending new requests here at once, and drains those in
// flight) and returns when done or after 2 s.
func (a *app) register() (leave func()) {
	if a.cfg.EdgeRegistry == "" {
		return func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for pool, u := range a.registrations() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = edge.Register(ctx, a.cfg.EdgeRegistry, a.cfg.EdgeToken, pool, u, heartbeatEvery, nil, a.log.With("edge_pool", pool))
		}()
	}
	return func() {
		cancel()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			a.log.Warn("edge deregistration still running after 3s; the edge forgets this instance at its TTL")
		}
	}
}
