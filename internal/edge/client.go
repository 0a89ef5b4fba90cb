package edge

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
)

// instancesURL is the registry API's URL of a pool's instances.
func instancesURL(registryURL, pool string) string {
	return strings.TrimSuffix(registryURL, "/") + "/_edge/v1/pools/" + url.PathEscape(pool) + "/instances"
}

// Register keeps selfURL registered in pool at the edge's registry
// (registryURL is the edge's base URL): a heartbeat every `every`, with a
// TTL of three heartbeats, until ctx ends; then it deregisters (with a
// 2 s timeout) so that the edge drains the instance at once. Failed
// heartbeats are logged and retried at the next tick. hc nil is a client
// with a 2 s timeout; log nil is slog.Default(). It returns ctx's end.
func Register(ctx context.Context, registryURL, token, pool, selfURL string, every time.Duration, hc *http.Client, log *slog.Logger) error {
	if hc == nil {
		hc = &http.Client{Timeout: 2 * time.Second}
	}
	if log == nil {
		log = slog.Default()
	}
	if every <= 0 {
		every = time.Second
	}
	body, err := json.Marshal(Registration{URL: selfURL, TTLms: (3 * every).Milliseconds()})
	if err != nil {
		return errs.E("edge.Register", err)
	}
	target := instancesURL(registryURL, pool)
	t := time.NewTicker(every)
	defer t.Stop()
	registered := false
	for {
		err := call(ctx, hc, http.MethodPut, target, token, body, nil)
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("edge heartbeat failed", "registry", registryURL, "pool", pool, "err", err)
		case err == nil && !registered:
			registered = true
			log.Info("registered at the edge", "registry", registryURL, "pool", pool, "url", selfURL)
		}
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			if err := call(dctx, hc, http.MethodDelete, target+"?url="+url.QueryEscape(selfURL), token, nil, nil); err != nil {
				log.Warn("edge deregistration failed; the instance leaves at the end of its TTL", "err", err)
			}
			return ctx.Err()
		case <-t.C:
		}
	}
}

// call makes one registry request and decodes a JSON answer into out.
func call(ctx context.Context, hc *http.Client, method, target, token string, body []byte, out any) error {
	const op = "edge.registry"
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return errs.E(op, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return errs.E(op, errs.Unavailable, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 300 {
		return errs.FromProblem(op, resp.StatusCode, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return errs.E(op, errs.Unavailable, err)
		}
	}
	return nil
}

// RegistryResolver gives the healthy instances of a pool as the edge's
// registry knows them; Run refreshes it. A failed refresh keeps the last
// good answer.
type RegistryResolver struct {
	target string
	token  string
	hc     *http.Client
	log    *slog.Logger

	mu  sync.RWMutex
	cur []string
}

var _ httpx.Resolver = (*RegistryResolver)(nil)

// NewRegistryResolver returns a resolver of pool's instances at the edge
// whose registry is at registryURL; hc nil is a client with a 2 s timeout,
// log nil slog.Default(). It has no endpoints until the first Refresh.
func NewRegistryResolver(registryURL, token, pool string, hc *http.Client, log *slog.Logger) *RegistryResolver {
	if hc == nil {
		hc = &http.Client{Timeout: 2 * time.Second}
	}
	if log == nil {
		log = slog.Default()
	}
	return &RegistryResolver{target: instancesURL(registryURL, pool), token: token, hc: hc, log: log}
}

// Endpoints returns the instances of the last good answer.
func (r *RegistryResolver) Endpoints() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.cur
}

// Refresh asks the registry once; on error the last good answer stays.
func (r *RegistryResolver) Refresh(ctx context.Context) error {
	var l InstanceList
	if err := call(ctx, r.hc, http.MethodGet, r.target, r.token, nil, &l); err != nil {
		return err
	}
	r.mu.Lock()
	changed := !slices.Equal(r.cur, l.Instances)
	r.cur = l.Instances
	r.mu.Unlock()
	if changed {
		r.log.Info("service instances changed", "registry", r.target, "instances", l.Instances)
	}
	return nil
}

// Run refreshes every interval until ctx ends, logging failures.
func (r *RegistryResolver) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		lctx, cancel := context.WithTimeout(ctx, every)
		if err := r.Refresh(lctx); err != nil && ctx.Err() == nil {
			r.log.Warn("edge registry lookup failed; keeping the last answer", "err", err)
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
