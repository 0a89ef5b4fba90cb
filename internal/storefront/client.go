package storefront

import (
	"net/http"
	"net/netip"
	"strings"
)

// clientAddr is the address of r's client: the connection's peer, unless
// the peer is one of Deps.TrustedProxies, in which case X-Forwarded-For is
// read from the right (the hop our proxy added) leftwards, skipping trusted
// proxies, and the first address that is not one is the client. Entries
// left of it were written by the client and are never believed. Only
// X-Forwarded-For is read (the header Go's ReverseProxy, nginx, HAProxy and
// the cloud load balancers append to): honouring Forwarded as well would let
// a client behind a proxy that sets only one of them choose the other.
// The zero Addr when the peer address cannot be read.
func (s *Server) clientAddr(r *http.Request) netip.Addr {
	peer := parseHop(r.RemoteAddr)
	if !peer.IsValid() || !s.trustedProxy(peer) {
		return peer
	}
	client := peer
	hops := forwardedFor(r.Header)
	for i := len(hops) - 1; i >= 0; i-- {
		a := parseHop(hops[i])
		if !a.IsValid() {
			break // garbage: the last hop we could read is as far as we know
		}
		client = a
		if !s.trustedProxy(a) {
			break
		}
	}
	return client
}

// clientKey is r's client for the per-client limits: an IPv4 address, or
// the /64 of an IPv6 address (one subscriber usually holds a whole /64).
func (s *Server) clientKey(r *http.Request) string {
	return addrKey(s.clientAddr(r))
}

func addrKey(a netip.Addr) string {
	switch {
	case !a.IsValid():
		return "unknown"
	case a.Is4():
		return a.String()
	}
	p, err := a.Prefix(64)
	if err != nil {
		return a.String()
	}
	return p.String()
}

func (s *Server) trustedProxy(a netip.Addr) bool {
	for _, p := range s.d.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// forwardedFor is every X-Forwarded-For entry, in order, across all the
// header's lines.
func forwardedFor(h http.Header) []string {
	var hops []string
	for _, line := range h.Values("X-Forwarded-For") {
		for _, hop := range strings.Split(line, ",") {
			hops = append(hops, strings.TrimSpace(hop))
		}
	}
	return hops
}

// parseHop reads an address as found in RemoteAddr or X-Forwarded-For:
// "1.2.3.4", "1.2.3.4:80", "2001:db8::1" or "[2001:db8::1]:80". IPv4-mapped
// IPv6 addresses become IPv4 and zones are dropped. The zero Addr when it
// is none of these.
func parseHop(s string) netip.Addr {
	a, err := netip.ParseAddr(s)
	if err != nil {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			return netip.Addr{}
		}
		a = ap.Addr()
	}
	return a.Unmap().WithZone("")
}
