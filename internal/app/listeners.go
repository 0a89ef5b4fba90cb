package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/globomantics/globomantics/internal/config"
	"github.com/globomantics/globomantics/internal/platform/httpx"
)

// listeners are the process's HTTP servers: the public one (the
// storefront, media, health) and the internal one (the services' APIs
// under /svc/, health), or a single internal one for a process with no
// public pages. They start, drain and stop together.
type listeners struct {
	servers []*http.Server
	addrs   map[string]string // "public", "internal" → the address bound
	errc    chan error        // the first server's failure
}

// listen binds the process's listeners:
//
//   - with the storefront here: the public mux on HTTPAddr and the internal
//     mux on InternalAddr (an ephemeral loopback port when unset): /svc/ is
//     never on the public port;
//   - without it: the internal mux on HTTPAddr when InternalAddr is unset
//     (the process has no public pages), else the public mux (health only)
//     on HTTPAddr and the internal mux on InternalAddr.
func (a *app) listen() (*listeners, error) {
	cfg := a.cfg
	type bind struct {
		name, addr string
		mux        http.Handler
	}
	var binds []bind
	switch {
	case cfg.Runs(config.Storefront):
		in := cfg.InternalAddr
		if in == "" {
			in = "127.0.0.1:0"
		}
		binds = []bind{{"public", cfg.HTTPAddr, a.mux}, {"internal", in, a.imux}}
	case cfg.InternalAddr == "":
		binds = []bind{{"internal", cfg.HTTPAddr, a.imux}}
	default:
		binds = []bind{{"public", cfg.HTTPAddr, a.mux}, {"internal", cfg.InternalAddr, a.imux}}
	}
	l := &listeners{addrs: map[string]string{}, errc: make(chan error, len(binds))}
	var lns []net.Listener
	for _, b := range binds {
		ln, err := net.Listen("tcp", b.addr)
		if err != nil {
			for _, o := range lns {
				_ = o.Close()
			}
			return nil, fmt.Errorf("listen %s (%s): %w", b.addr, b.name, err)
		}
		lns = append(lns, ln)
		l.addrs[b.name] = ln.Addr().String()
		l.servers = append(l.servers, a.httpServer(b.mux))
	}
	for i, srv := range l.servers {
		go func() {
			if err := srv.Serve(lns[i]); !errors.Is(err, http.ErrServerClosed) {
				l.errc <- fmt.Errorf("%s listener: %w", binds[i].name, err)
			}
		}()
	}
	return l, nil
}

// httpServer serves mux with the shop's middleware. While draining at
// shutdown, every response asks its client to close the connection, so
// keep-alive clients reconnect (through their load balancer, to another
// instance) instead of reusing one about to close.
func (a *app) httpServer(mux http.Handler) *http.Server {
	handler := httpx.MiddlewareWith(a.log, a.obs, mux)
	return &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if a.draining.Load() {
				w.Header().Set("Connection", "close")
			}
			handler.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
}

// Shutdown stops every listener and waits for the requests in flight.
func (l *listeners) Shutdown(ctx context.Context) error {
	var wg sync.WaitGroup
	errc := make(chan error, len(l.servers))
	for _, s := range l.servers {
		wg.Add(1)
		go func() { defer wg.Done(); errc <- s.Shutdown(ctx) }()
	}
	wg.Wait()
	close(errc)
	var all []error
	for err := range errc {
		all = append(all, err)
	}
	return errors.Join(all...)
}

// Close closes every listener and connection at once.
func (l *listeners) Close() {
	for _, s := range l.servers {
		_ = s.Close()
	}
}
