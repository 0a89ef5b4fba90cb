package loadgen

import (
	"math"
	"time"
)

// Histogram geometry: bucket i holds latencies in [base^i, base^(i+1))
// microseconds, so a percentile read from it is within 1 % of the true
// value; bucket 0 also holds everything under a microsecond and the last
// one everything over about 100 s. Memory is fixed whatever the number of
// samples (HdrHistogram's idea, with one log scale instead of its linear
// sub-buckets).
const (
	histBase    = 1.02
	histBuckets = 935 // base^935 µs ≈ 107 s
)

var logBase = math.Log(histBase)

// histogram records latencies in fixed logarithmic buckets. The zero value
// is empty and ready to use; it is not safe for concurrent use.
type histogram struct {
	counts []uint32
	n      uint64
	sum    time.Duration
	min    time.Duration
	max    time.Duration
}

func bucketOf(d time.Duration) int {
	us := float64(d) / float64(time.Microsecond)
	if us < 1 {
		return 0
	}
	i := int(math.Log(us) / logBase)
	return min(i, histBuckets-1)
}

// record adds one latency.
func (h *histogram) record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	if h.counts == nil {
		h.counts = make([]uint32, histBuckets)
	}
	h.counts[bucketOf(d)]++
	if h.n == 0 || d < h.min {
		h.min = d
	}
	if d > h.max {
		h.max = d
	}
	h.n++
	h.sum += d
}

// merge adds o's samples to h.
func (h *histogram) merge(o *histogram) {
	if o.n == 0 {
		return
	}
	if h.counts == nil {
		h.counts = make([]uint32, histBuckets)
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.n += o.n
	h.sum += o.sum
}

// quantile returns the latency at or below which a fraction q (0..1] of
// the samples lie: the geometric middle of the bucket holding it, clamped
// to the exact minimum and maximum seen. 0 when empty.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += uint64(c)
		if seen >= rank {
			mid := math.Pow(histBase, float64(i)+0.5) * float64(time.Microsecond)
			d := time.Duration(mid)
			return min(max(d, h.min), h.max)
		}
	}
	return h.max
}

func (h *histogram) mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return h.sum / time.Duration(h.n)
}
