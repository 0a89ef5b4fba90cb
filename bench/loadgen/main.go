// Command loadgen is a closed-loop HTTP load generator for the bench scripts:
// C workers each send GET requests to the given URLs (round-robin) for a fixed
// duration, and it prints requests per second and latency percentiles as JSON.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

type result struct {
	Label    string  `json:"label"`
	Requests int     `json:"requests"`
	Errors   int     `json:"errors"`
	Seconds  float64 `json:"seconds"`
	RPS      float64 `json:"rps"`
	P50ms    float64 `json:"p50_ms"`
	P90ms    float64 `json:"p90_ms"`
	P99ms    float64 `json:"p99_ms"`
}

func main() {
	var (
		conc  = flag.Int("c", 32, "concurrent workers")
		dur   = flag.Duration("d", 10*time.Second, "duration (bounded: at most 5m)")
		warm  = flag.Duration("warmup", 2*time.Second, "warm-up before measuring")
		label = flag.String("label", "", "label for the result")
		urls  = flag.String("urls", "", "comma-separated URLs to GET round-robin (loopback only)")
	)
	flag.Parse()
	list := strings.Split(*urls, ",")
	for _, u := range list {
		if !strings.HasPrefix(u, "http://127.0.0.1:") && !strings.HasPrefix(u, "http://localhost:") {
			fmt.Fprintln(os.Stderr, "loadgen: only loopback targets are allowed:", u)
			os.Exit(2)
		}
	}
	if *dur > 5*time.Minute {
		*dur = 5 * time.Minute
	}
	tr := &http.Transport{MaxIdleConnsPerHost: *conc * 2, MaxConnsPerHost: *conc * 2}
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}

	run := func(d time.Duration, record bool) ([]time.Duration, int) {
		var mu sync.Mutex
		var all []time.Duration
		errs := 0
		deadline := time.Now().Add(d)
		var wg sync.WaitGroup
		for w := 0; w < *conc; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				var lat []time.Duration
				e := 0
				for i := w; time.Now().Before(deadline); i++ {
					start := time.Now()
					resp, err := hc.Get(list[i%len(list)])
					if err == nil {
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != 200 {
							err = fmt.Errorf("status %d", resp.StatusCode)
						}
					}
					if err != nil {
						e++
						continue
					}
					if record {
						lat = append(lat, time.Since(start))
					}
				}
				mu.Lock()
				all = append(all, lat...)
				errs += e
				mu.Unlock()
			}(w)
		}
		wg.Wait()
		return all, errs
	}
	run(*warm, false)
	start := time.Now()
	lat, errs := run(*dur, true)
	secs := time.Since(start).Seconds()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[int(float64(len(lat)-1)*p)].Microseconds()) / 1000
	}
	_ = json.NewEncoder(os.Stdout).Encode(result{
		Label: *label, Requests: len(lat), Errors: errs, Seconds: secs,
		RPS: float64(len(lat)) / secs, P50ms: pct(0.50), P90ms: pct(0.90), P99ms: pct(0.99),
	})
}
