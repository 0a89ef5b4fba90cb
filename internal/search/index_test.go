package search

import (
	"cmp"
	"crypto/rand"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestOpenIndexRefusesOtherLayout checks that an index built with another
// mapping is not silently searched with the wrong analyzers.
func TestOpenIndexRefusesOtherLayout(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "search.bleve")
	idx, err := OpenIndex(dir)
	if err != nil {
		t.Fatal(err)
	}
	// v1: before price, listing time and category id were indexed.
	if err := idx.bi.SetInternal(mappingVersionKey, []byte("globo-search-v1")); err != nil {
		t.Fatal(err)
	}
	if err := idx.Close(); err != nil {
		t.Fatal(err)
	}
	if idx, err := OpenIndex(dir); err == nil || !strings.Contains(err.Error(), "layout") {
		if idx != nil {
			idx.Close()
		}
		t.Fatalf("OpenIndex of an index with another layout: err = %v, want a layout error", err)
	}
}

// fillWithGarbage overwrites every file under dir with random bytes of the
// same length (at least one byte).
func fillWithGarbage(t *testing.T, dir string) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		b := make([]byte, max(info.Size(), 1))
		if _, err := rand.Read(b); err != nil {
			return err
		}
		n++
		return os.WriteFile(p, b, 0o644)
	})
	if err != nil || n == 0 {
		t.Fatalf("garbage in %s: %d files, %v", dir, n, err)
	}
}

// TestOpenIndexDamaged: an index whose files hold garbage (all of them, or
// only its metadata) is reported as unusable, not a panic.
func TestOpenIndexDamaged(t *testing.T) {
	for _, only := range []string{"", "index_meta.json", "store"} {
		t.Run("garbage in "+cmp.Or(only, "every file"), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "search.bleve")
			idx, err := OpenIndex(dir)
			if err != nil {
				t.Fatal(err)
			}
			if err := idx.Put("prd_1", Document{Name: "Cast Iron Skillet"}); err != nil {
				t.Fatal(err)
			}
			if err := idx.Close(); err != nil {
				t.Fatal(err)
			}
			switch only {
			case "":
				fillWithGarbage(t, dir)
			case "store":
				fillWithGarbage(t, filepath.Join(dir, "store"))
			default:
				if err := os.WriteFile(filepath.Join(dir, only), []byte("\x00garbage{"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			idx, err = OpenIndex(dir)
			if err == nil {
				idx.Close()
				t.Fatal("OpenIndex of a damaged index succeeded")
			}
			if !errors.Is(err, ErrIndexUnusable) || !strings.Contains(err.Error(), dir) {
				t.Fatalf("err = %v, want ErrIndexUnusable naming %s", err, dir)
			}
		})
	}
}

// TestOpenIndexHeldByAnother: an index another holder keeps open is not
// reported as unusable (it must not be set aside and rebuilt).
func TestOpenIndexHeldByAnother(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "search.bleve")
	idx, err := OpenIndex(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer idx.Close()
	other, err := openIndex(dir, 100*time.Millisecond)
	if err == nil {
		other.Close()
		t.Fatal("a second open of a held index succeeded")
	}
	if errors.Is(err, ErrIndexUnusable) || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("err = %v, want a busy index, not an unusable one", err)
	}
}
