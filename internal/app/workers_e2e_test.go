package app_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/platform/testenv"
	"github.com/globomantics/globomantics/internal/worker/thumbnail"
)

// Three thumbnail workers, each its own process, share the work of 200
// listed items; one is killed with SIGKILL half-way. Every item gets its
// thumbnails, and each thumbnail exists once.
func TestThumbnailWorkersShareAndSurviveAKill(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes")
	}
	bin := binary(t)
	root := t.TempDir()
	blobs := filepath.Join(root, "blobs")
	nats := testenv.FreeAddr(t)
	env := []string{"GLOBO_SERVICE_TOKEN=" + serviceToken, "GLOBO_LOG_LEVEL=info",
		// The job of a killed worker goes to another after 5 s, not the default 60 s.
		"GLOBO_ACK_WAIT=5s"}
	cat := &osProc{name: "catalog", bin: bin, addr: testenv.FreeAddr(t), env: env,
		args: []string{"--data-dir", filepath.Join(root, "catalog"), "--services", "catalog", "--blob-dir", blobs,
			"--nats-listen", nats}}
	cat.start(t)
	cat.waitReady(t)
	var workers []*osProc
	for i := range 3 {
		w := &osProc{name: fmt.Sprintf("thumbnails%d", i+1), bin: bin, addr: testenv.FreeAddr(t), env: env,
			args: []string{"--data-dir", filepath.Join(root, fmt.Sprintf("w%d", i+1)), "--services", "thumbnails",
				"--blob-dir", blobs, "--nats-url", "nats://" + nats, "--peer", "catalog=" + cat.url()}}
		w.start(t)
		workers = append(workers, w)
	}
	for _, w := range workers {
		w.waitReady(t)
	}

	call := func(method, path string, body any, out any) int {
		t.Helper()
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, _ := http.NewRequest(method, cat.url()+path, rd)
		req.Header.Set("Authorization", operatorAuth())
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if out != nil {
			_ = json.NewDecoder(resp.Body).Decode(out)
		}
		return resp.StatusCode
	}
	var cats struct {
		Items []struct {
			ID string `json:"id"`
		} `json:"categories"`
	}
	call("GET", "/svc/catalog/v1/categories", nil, &cats)
	if len(cats.Items) == 0 {
		t.Fatal("the catalog has no category to list items in")
	}

	// 200 items, each with its own picture, listed from 8 goroutines.
	const items = 200
	ids := make([]string, items)
	var wg sync.WaitGroup
	errc := make(chan error, items)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < items; i += 8 {
				img := image.NewRGBA(image.Rect(0, 0, 200, 150))
				for p := range img.Pix {
					img.Pix[p] = byte(i + p)
				}
				img.Set(0, 0, color.RGBA{R: byte(i), A: 255})
				var buf bytes.Buffer
				_ = png.Encode(&buf, img)
				var p struct {
					ID string `json:"id"`
				}
				st := call("POST", "/svc/catalog/v1/products", map[string]any{"name": fmt.Sprintf("Lamp %d", i), "description": "A lamp.",
					"category": cats.Items[0].ID, "price": map[string]any{"amount": 1000 + i, "currency": "USD"}, "stock": 5, "image": buf.Bytes()}, &p)
				if st != http.StatusCreated {
					errc <- fmt.Errorf("listing item %d: %d", i, st)
					return
				}
				ids[i] = p.ID
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}

	done := func() int {
		n := 0
		for _, id := range ids {
			var p struct {
				Thumbnails map[string]string `json:"thumbnails"`
			}
			call("GET", "/svc/catalog/v1/products/"+id, nil, &p)
			if len(p.Thumbnails) == len(thumbnail.Sizes) {
				n++
			}
		}
		return n
	}
	// Kill a worker once about half of the work is done.
	deadline := time.Now().Add(60 * time.Second)
	for done() < items/2 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	workers[0].kill()
	t.Logf("%s killed with %d of %d items done", workers[0].name, done(), items)

	testenv.CheckFor(t, 90*time.Second, func() error {
		if n := done(); n < items {
			return fmt.Errorf("%d of %d items have their thumbnails", n, items)
		}
		return nil
	})
	// The work was shared: each surviving worker made some.
	for _, w := range workers[1:] {
		if n := strings.Count(w.logs.String(), "thumbnails made"); n == 0 {
			t.Errorf("%s made no thumbnails: the work was not shared", w.name)
		} else {
			t.Logf("%s made the thumbnails of %d items", w.name, n)
		}
	}
	// Each thumbnail once: exactly one file per size and product.
	for _, id := range ids {
		files, err := filepath.Glob(filepath.Join(blobs, "products", id, "thumb-*"))
		if err != nil {
			t.Fatal(err)
		}
		if len(files) != len(thumbnail.Sizes) {
			t.Errorf("product %s has %d thumbnail files, want %d: %v", id, len(files), len(thumbnail.Sizes), files)
		}
	}
}
