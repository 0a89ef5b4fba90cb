package edge_test

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/edge"
)

// benchGet runs GETs of url from parallel clients over kept-alive
// connections; allocations counted include the client's and the
// backend's, so compare BenchmarkProxy with BenchmarkDirect.
func benchGet(b *testing.B, url string) {
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}}
	defer c.CloseIdleConnections()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req, _ := http.NewRequest("GET", url, nil)
		for pb.Next() {
			resp, err := c.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}

var smallBody = []byte(`{"id":"p-1","name":"Globomantics mug","price":"12.00"}`)

func benchBackend(b *testing.B) *testBackend {
	return startBackend(b, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(smallBody)
	})
}

// BenchmarkDirect is a client asking the backend itself.
func BenchmarkDirect(b *testing.B) {
	be := benchBackend(b)
	benchGet(b, be.URL+"/api/products/p-1")
}

// BenchmarkProxy is the same client asking through the edge.
func BenchmarkProxy(b *testing.B) {
	be := benchBackend(b)
	e := startEdge(b, edge.Config{HealthInterval: time.Second, Backends: map[string][]string{"storefront": {be.URL}}})
	benchGet(b, "http://"+e.Addr()+"/api/products/p-1")
}
