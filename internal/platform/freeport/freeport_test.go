package freeport

import (
	"net"
	"strconv"
	"testing"
)

func TestGetIsBindableAndBelowTheEphemeralRange(t *testing.T) {
	seen := map[int]bool{}
	for range 20 {
		p, err := Get()
		if err != nil {
			t.Fatal(err)
		}
		if p < low || p >= ephemeralLow() {
			t.Errorf("port %d outside [%d, %d)", p, low, ephemeralLow())
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatalf("port %d not bindable: %v", p, err)
		}
		l.Close()
		seen[p] = true
	}
	if len(seen) < 15 {
		t.Errorf("20 picks gave only %d ports", len(seen))
	}
}
