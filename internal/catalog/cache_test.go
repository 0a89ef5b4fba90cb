package catalog_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/catalog/catalogdb"
	"github.com/globomantics/globomantics/internal/platform/blob"
	"github.com/globomantics/globomantics/internal/platform/cache"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// countingStore counts GetProduct calls; when gate is set, every call waits
// for it to close, and entered is closed by the first call.
type countingStore struct {
	catalog.Store
	gets    atomic.Int32
	gate    chan struct{}
	entered chan struct{}
	once    sync.Once
}

func (s *countingStore) GetProduct(ctx context.Context, id string) (catalog.Record, error) {
	s.gets.Add(1)
	if s.gate != nil {
		s.once.Do(func() { close(s.entered) })
		select {
		case <-s.gate:
		case <-ctx.Done():
			return catalog.Record{}, ctx.Err()
		}
	}
	return s.Store.GetProduct(ctx, id)
}

// redisCache is a cache in a fresh database of the test's redis-server,
// through a client of its own: two calls with one url are two instances
// sharing one cache.
func redisCache(t *testing.T, url string) *cache.Redis {
	t.Helper()
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout, opt.MaxRetries = time.Second, time.Second, time.Second, 0
	c := redis.NewClient(opt)
	t.Cleanup(func() { _ = c.Close() })
	return cache.NewRedis(c, "globo:cache:")
}

// cacheKinds are the caches the look-aside tests run over.
var cacheKinds = []struct {
	name string
	new  func(t *testing.T) cache.Cache
}{
	{"memory", func(t *testing.T) cache.Cache { return cache.NewMemory(clock.Real{}, 100) }},
	{"redis", func(t *testing.T) cache.Cache { return redisCache(t, testenv.Redis(t)) }},
}

// cachedService is a catalog service over store with the cache c (a long
// TTL: only deletes make changes visible), listing one product to read.
func cachedService(t *testing.T, store catalog.Store, c cache.Cache, clk clock.Clock) *catalog.Service {
	t.Helper()
	blobs, err := blob.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return catalog.NewService(store, blobs, nil, clk, catalog.WithCache(c, time.Hour),
		catalog.WithLogger(testenv.Logger(t)))
}

func openStore(t *testing.T, db *sqldb.DB) catalog.Store {
	t.Helper()
	store, err := catalogdb.Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	return store
}

func listOne(t *testing.T, svc *catalog.Service, stock int) catalog.Product {
	t.Helper()
	ctx := context.Background()
	if err := svc.EnsureCategories(ctx, []catalog.Category{{ID: "home", Name: "Home"}}); err != nil {
		t.Fatal(err)
	}
	p, err := svc.ListItem(ctx, newItem(t, "Teapot", "home", stock))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// checkFor calls fn until it returns nil, failing with its last error after
// timeout.
func checkFor(t *testing.T, timeout time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func wantStats(t *testing.T, svc *catalog.Service, want catalog.CacheStats) {
	t.Helper()
	if got := svc.CacheStats(); got != want {
		t.Errorf("CacheStats = %+v, want %+v", got, want)
	}
}

// 100 concurrent misses of one product make one store read.
func TestGetProductStampede(t *testing.T) {
	for _, kind := range cacheKinds {
		t.Run(kind.name, func(t *testing.T) {
			ctx := context.Background()
			cs := &countingStore{Store: openStore(t, testenv.SQLite(t))}
			svc := cachedService(t, cs, kind.new(t), nil)
			p := listOne(t, svc, 7)

			cs.gate, cs.entered = make(chan struct{}), make(chan struct{})
			const n = 100
			var wg sync.WaitGroup
			got := make([]catalog.Product, n)
			errc := make([]error, n)
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					got[i], errc[i] = svc.GetProduct(ctx, p.ID)
				}()
			}
			<-cs.entered
			// Nothing is cached until the load ends, so every caller
			// misses; wait until all have, then let the load finish.
			checkFor(t, 10*time.Second, func() error {
				if m := svc.CacheStats().Misses; m != n {
					return fmt.Errorf("%d of %d callers missed", m, n)
				}
				return nil
			})
			close(cs.gate)
			wg.Wait()
			for i := range n {
				if errc[i] != nil {
					t.Fatalf("caller %d: %v", i, errc[i])
				}
				if got[i].ID != p.ID || got[i].Stock != 7 {
					t.Fatalf("caller %d got %+v", i, got[i])
				}
			}
			if g := cs.gets.Load(); g != 1 {
				t.Errorf("%d concurrent misses made %d store reads, want 1", n, g)
			}
			wantStats(t, svc, catalog.CacheStats{Misses: n, Loads: 1})
			if _, err := svc.GetProduct(ctx, p.ID); err != nil {
				t.Fatal(err)
			}
			wantStats(t, svc, catalog.CacheStats{Hits: 1, Misses: n, Loads: 1})
		})
	}
}

// The second read of a product is a hit; the counters show it.
func TestCacheHitRatio(t *testing.T) {
	for _, kind := range cacheKinds {
		t.Run(kind.name, func(t *testing.T) {
			ctx := context.Background()
			cs := &countingStore{Store: openStore(t, testenv.SQLite(t))}
			svc := cachedService(t, cs, kind.new(t), nil)
			p := listOne(t, svc, 3)
			wantStats(t, svc, catalog.CacheStats{})
			if r := svc.CacheStats().HitRatio(); r != 0 {
				t.Errorf("HitRatio before any read = %v", r)
			}
			for range 2 {
				got, err := svc.GetProduct(ctx, p.ID)
				if err != nil {
					t.Fatal(err)
				}
				if got.ID != p.ID || got.Stock != 3 || got.Name != p.Name {
					t.Fatalf("GetProduct = %+v, want %+v", got, p)
				}
			}
			wantStats(t, svc, catalog.CacheStats{Hits: 1, Misses: 1, Loads: 1})
			if r := svc.CacheStats().HitRatio(); r != 0.5 {
				t.Errorf("HitRatio = %v, want 0.5", r)
			}
			if g := cs.gets.Load(); g != 1 {
				t.Errorf("store read %d times, want 1", g)
			}
			// A missing product is not cached, and counted as a miss.
			if _, err := svc.GetProduct(ctx, "prd_missing"); err == nil {
				t.Fatal("GetProduct of a missing product succeeded")
			}
			wantStats(t, svc, catalog.CacheStats{Hits: 1, Misses: 2, Loads: 2})
		})
	}
}

// Without a cache every read is a load; the counters of the cache stay zero.
func TestNoCacheStats(t *testing.T) {
	ctx := context.Background()
	blobs, err := blob.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	svc := catalog.NewService(openStore(t, testenv.SQLite(t)), blobs, nil, nil)
	p := listOne(t, svc, 1)
	for range 2 {
		if _, err := svc.GetProduct(ctx, p.ID); err != nil {
			t.Fatal(err)
		}
	}
	wantStats(t, svc, catalog.CacheStats{Loads: 2})
}

// Two instances over one database and one Redis: a change made by one is
// seen by the other's next read (its cached copy was deleted), well within
// a second, although the TTL is an hour.
func TestCacheInvalidationAcrossInstances(t *testing.T) {
	ctx := context.Background()
	db := testenv.SQLite(t)
	url := testenv.Redis(t)
	clk := clock.NewFake(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC))
	a := cachedService(t, openStore(t, db), redisCache(t, url), clk)
	b := cachedService(t, openStore(t, db), redisCache(t, url), clk)
	p := listOne(t, b, 10)

	// read reads the product on a until check accepts it, within a second.
	read := func(what string, check func(catalog.Product) error) {
		t.Helper()
		checkFor(t, time.Second, func() error {
			got, err := a.GetProduct(ctx, p.ID)
			if err != nil {
				return err
			}
			if err := check(got); err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			return nil
		})
	}
	stock := func(want int) func(catalog.Product) error {
		return func(got catalog.Product) error {
			if got.Stock != want {
				return fmt.Errorf("stock %d, want %d", got.Stock, want)
			}
			return nil
		}
	}
	// cachedOnA reads twice more on a and wants the second to be a hit.
	cachedOnA := func() {
		t.Helper()
		for range 2 {
			if _, err := a.GetProduct(ctx, p.ID); err != nil {
				t.Fatal(err)
			}
		}
		before := a.CacheStats()
		if _, err := a.GetProduct(ctx, p.ID); err != nil {
			t.Fatal(err)
		}
		if after := a.CacheStats(); after.Hits != before.Hits+1 {
			t.Fatalf("a's read was not a hit: %+v then %+v", before, after)
		}
	}

	read("first read", stock(10))
	cachedOnA()

	if err := b.ReserveStock(ctx, "res-1", []catalog.Line{{ProductID: p.ID, Quantity: 3}}, time.Minute); err != nil {
		t.Fatal(err)
	}
	read("after b reserved 3", stock(7))
	cachedOnA()

	if err := b.ReleaseStock(ctx, "res-1"); err != nil {
		t.Fatal(err)
	}
	read("after b released", stock(10))
	cachedOnA()

	if err := b.SetThumbnails(ctx, p.ID, map[string]string{"small": "products/" + p.ID + "/small.jpg"}); err != nil {
		t.Fatal(err)
	}
	read("after b set thumbnails", func(got catalog.Product) error {
		if got.Thumbnails["small"] == "" {
			return errors.New("no small thumbnail")
		}
		return nil
	})
	cachedOnA()

	// A reservation that expires and is swept by b.
	if err := b.ReserveStock(ctx, "res-2", []catalog.Line{{ProductID: p.ID, Quantity: 4}}, time.Minute); err != nil {
		t.Fatal(err)
	}
	read("after b reserved 4", stock(6))
	cachedOnA()
	clk.Advance(2 * time.Minute)
	if n, err := b.ReleaseExpired(ctx); err != nil || n != 1 {
		t.Fatalf("ReleaseExpired = %d, %v", n, err)
	}
	read("after b swept the expired reservation", stock(10))
	cachedOnA()

	// A price change by b: with the shared cache, a sees it at its next
	// read, without hearing of the change.
	if _, err := b.UpdateProduct(ctx, p.ID, catalog.ProductChange{Price: &money.Money{Amount: 2500}}); err != nil {
		t.Fatal(err)
	}
	read("after b changed the price", func(got catalog.Product) error {
		if got.Price != money.USD(2500) || got.Version != 2 {
			return fmt.Errorf("price %v at version %d, want $25.00 at version 2", got.Price, got.Version)
		}
		return nil
	})
}

// A cache that cannot be reached is a miss: reads go to the store.
func TestCacheDown(t *testing.T) {
	ctx := context.Background()
	srv := testenv.StartRedis(t)
	cs := &countingStore{Store: openStore(t, testenv.SQLite(t))}
	svc := cachedService(t, cs, redisCache(t, srv.URL()), nil)
	p := listOne(t, svc, 2)
	srv.Stop()
	for range 2 {
		got, err := svc.GetProduct(ctx, p.ID)
		if err != nil {
			t.Fatalf("GetProduct with the cache down: %v", err)
		}
		if got.Stock != 2 {
			t.Fatalf("GetProduct = %+v", got)
		}
	}
	wantStats(t, svc, catalog.CacheStats{Misses: 2, Loads: 2})
}

// A caller waiting for another's load gives up when its own context ends;
// the load carries on for the others.
func TestGetProductWaiterCancelled(t *testing.T) {
	ctx := context.Background()
	cs := &countingStore{Store: openStore(t, testenv.SQLite(t))}
	svc := cachedService(t, cs, cache.NewMemory(clock.Real{}, 100), nil)
	p := listOne(t, svc, 5)
	cs.gate, cs.entered = make(chan struct{}), make(chan struct{})

	first := make(chan error, 1)
	go func() {
		_, err := svc.GetProduct(ctx, p.ID)
		first <- err
	}()
	<-cs.entered
	wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := svc.GetProduct(wctx, p.ID); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiter past its deadline: %v, want context.DeadlineExceeded", err)
	}
	close(cs.gate)
	if err := <-first; err != nil {
		t.Errorf("first caller: %v", err)
	}
	if g := cs.gets.Load(); g != 1 {
		t.Errorf("store read %d times, want 1", g)
	}
}
