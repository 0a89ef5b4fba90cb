package httpx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Resolver gives the base URLs of a service's instances. The answer may
// change while the process runs (instances come and go); a Client asks for
// it at the start of every call.
type Resolver interface {
	Endpoints() []string
}

// Static is a fixed list of base URLs.
type Static []string

// Endpoints returns the list.
func (s Static) Endpoints() []string { return s }

// SRV resolves a service's instances from the DNS SRV records of a name
// (RFC 2782, e.g. "_checkout._tcp.shop.test"), refreshed by Run. Targets
// are ordered by priority, then by weight (heaviest first), and turned into
// addresses through the same resolver when it knows them (else left as
// names for the system to resolve). A failed lookup
// keeps the last good answer; an answer with no records empties the list
// (the zone says there is no instance).
type SRV struct {
	name   string
	scheme string
	r      *net.Resolver
	log    *slog.Logger

	mu  sync.RWMutex
	cur []string
}

// NewSRV returns a resolver of name's SRV records into scheme://host:port
// URLs; r nil is net.DefaultResolver, log nil slog.Default(). It has no
// endpoints until the first Refresh.
func NewSRV(name, scheme string, r *net.Resolver, log *slog.Logger) *SRV {
	if r == nil {
		r = net.DefaultResolver
	}
	if log == nil {
		log = slog.Default()
	}
	return &SRV{name: name, scheme: scheme, r: r, log: log}
}

// Endpoints returns the instances of the last good lookup.
func (s *SRV) Endpoints() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.cur
}

// Refresh looks the name up once; on error the last good answer stays.
func (s *SRV) Refresh(ctx context.Context) error {
	_, recs, err := s.r.LookupSRV(ctx, "", "", s.name)
	var dnsErr *net.DNSError
	if err != nil && !(errors.As(err, &dnsErr) && dnsErr.IsNotFound) {
		return fmt.Errorf("httpx: SRV lookup of %s: %w", s.name, err)
	}
	slices.SortStableFunc(recs, func(a, b *net.SRV) int {
		if a.Priority != b.Priority {
			return int(a.Priority) - int(b.Priority)
		}
		return int(b.Weight) - int(a.Weight)
	})
	urls := make([]string, 0, len(recs))
	for _, rec := range recs {
		host := strings.TrimSuffix(rec.Target, ".")
		// The target's address comes from the same DNS server when it
		// knows it (the shop's zone names instances the system resolver
		// does not know); otherwise the name is left to the system.
		if addrs, err := s.r.LookupIPAddr(ctx, host); err == nil && len(addrs) > 0 {
			host = addrs[0].IP.String()
		}
		urls = append(urls, s.scheme+"://"+net.JoinHostPort(host, strconv.Itoa(int(rec.Port))))
	}
	s.mu.Lock()
	changed := !slices.Equal(s.cur, urls)
	s.cur = urls
	s.mu.Unlock()
	if changed {
		s.log.Info("service instances changed", "srv", s.name, "instances", urls)
	}
	return nil
}

// Run refreshes every interval until ctx ends, logging failed lookups.
func (s *SRV) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		lctx, cancel := context.WithTimeout(ctx, every)
		if err := s.Refresh(lctx); err != nil && ctx.Err() == nil {
			s.log.Warn("service discovery lookup failed; keeping the last answer", "err", err)
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
