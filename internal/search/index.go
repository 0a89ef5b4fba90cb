package search

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/blevesearch/bleve/v2"
	"github.com/blevesearch/bleve/v2/analysis/analyzer/custom"
	"github.com/blevesearch/bleve/v2/analysis/lang/en"
	"github.com/blevesearch/bleve/v2/analysis/token/lowercase"
	"github.com/blevesearch/bleve/v2/analysis/tokenizer/unicode"
	"github.com/blevesearch/bleve/v2/index/scorch"
	"github.com/blevesearch/bleve/v2/mapping"
)

// Field names in the index. Name and description are each indexed twice:
// with the English analyzer (stemmed, stop words removed) for whole-word
// matches, and lower-cased but unstemmed ("…_words") for prefix and fuzzy
// matches, where stems would get in the way ("runn" is a prefix of
// "running" but not of its stem "run").
const (
	fieldName        = "name"
	fieldNameWords   = "name_words"
	fieldDescription = "description"
	fieldDescWords   = "description_words"
	fieldCategory    = "category"
	fieldCategoryID  = "category_id" // the category id exactly, for filters and facets
	fieldPrice       = "price"       // cents
	fieldListedAt    = "listed_at"   // Unix milliseconds; stored, see Put

	analyzerWords = "globo_words" // unicode words, lower-cased
)

// mappingVersion names the index layout built by newMapping. An index built
// with another version is refused by OpenIndex rather than silently searched
// with the wrong analyzers; bump it whenever newMapping changes.
//
// v2 added category_id, price and listed_at (filters, facets and sorts): an
// index of v1 is refused as unusable, so the app sets it aside and rebuilds
// it from the catalog. v3 stems the category as English, so that "book"
// finds the category "books".
const mappingVersion = "globo-search-v3"

var mappingVersionKey = []byte("globo_mapping_version")

// Document is what the index holds for one product; the product id is the
// document id. Price is in cents. A zero ListedAt keeps the listing time the
// index already has for the product (events written before they carried it).
type Document struct {
	Name        string    `json:"name"`
	Description string    `json:"description"`
	Category    string    `json:"category"`
	Price       int64     `json:"price"`
	ListedAt    time.Time `json:"listed_at"`
}

// indexed is a Document as bleve maps it: numbers as float64.
type indexed struct {
	Name        string  `json:"name"`
	Description string  `json:"description"`
	Category    string  `json:"category"`
	Price       float64 `json:"price"`
	ListedAt    float64 `json:"listed_at"`
}

// Index is a persistent full-text index of products, safe for concurrent use.
type Index struct {
	bi  bleve.Index
	dir string
}

// ErrIndexUnusable is wrapped by OpenIndex's error when dir holds an index
// that can never be opened as it is: its files are damaged or it has
// another layout. Such an index may be set aside and rebuilt. Other errors
// (another process holding the index, permissions) are not this.
var ErrIndexUnusable = errors.New("index unusable")

// lockWait bounds how long OpenIndex waits for another process to let go of
// the index.
const lockWait = 10 * time.Second

// OpenIndex opens the scorch index in dir, creating it (and dir) if it does
// not exist. It fails if the directory holds an index of another layout or
// one that cannot be read (both wrapping ErrIndexUnusable), or if another
// process keeps the index open for more than ten seconds.
func OpenIndex(dir string) (*Index, error) { return openIndex(dir, lockWait) }

func openIndex(dir string, wait time.Duration) (*Index, error) {
	cfg := map[string]any{"bolt_timeout": wait.String()}
	bi, err := openBleve(dir, cfg)
	switch {
	case errors.Is(err, bleve.ErrorIndexPathDoesNotExist) || errors.Is(err, bleve.ErrorIndexMetaMissing):
		bi, err = bleve.NewUsing(dir, newMapping(), scorch.Name, scorch.Name, cfg)
		if err != nil {
			return nil, fmt.Errorf("search: create index %s: %w", dir, err)
		}
		if err := bi.SetInternal(mappingVersionKey, []byte(mappingVersion)); err != nil {
			bi.Close()
			return nil, fmt.Errorf("search: create index %s: %w", dir, err)
		}
	case err != nil:
		// bleve closes what it opened when it fails, and its index may
		// come back as a typed nil: there is nothing to close here.
		if isLockTimeout(err) {
			return nil, fmt.Errorf("search: open index %s: another process holds it: %w", dir, err)
		}
		return nil, fmt.Errorf("search: open index %s: %w: %w", dir, ErrIndexUnusable, err)
	default:
		v, err := bi.GetInternal(mappingVersionKey)
		if err != nil {
			bi.Close()
			return nil, fmt.Errorf("search: open index %s: %w: %w", dir, ErrIndexUnusable, err)
		}
		if string(v) != mappingVersion {
			bi.Close()
			return nil, fmt.Errorf("search: index %s has layout %q, want %q: %w: remove it and let the search service rebuild it from the catalog", dir, v, mappingVersion, ErrIndexUnusable)
		}
	}
	return &Index{bi: bi, dir: dir}, nil
}

// openBleve opens the index in dir, turning a panic of bleve's decoders on
// damaged files into an error, and never returning a nil index as a
// non-nil interface.
func openBleve(dir string, cfg map[string]any) (bi bleve.Index, err error) {
	defer func() {
		if p := recover(); p != nil {
			bi, err = nil, fmt.Errorf("reading the index panicked: %v", p)
		}
	}()
	bi, err = bleve.OpenUsing(dir, cfg)
	if err != nil {
		return nil, err
	}
	return bi, nil
}

// isLockTimeout reports whether err is bbolt's "timeout": another process
// kept the index's root file locked for longer than the wait. bbolt returns
// its sentinel unwrapped and this module does not import bbolt, so the
// sentinel is recognised by its text.
func isLockTimeout(err error) bool {
	for ; err != nil; err = errors.Unwrap(err) {
		if err.Error() == "timeout" {
			return true
		}
	}
	return false
}

// newMapping is the index layout: explicit fields only, nothing dynamic.
func newMapping() *mapping.IndexMappingImpl {
	im := bleve.NewIndexMapping()
	im.DefaultAnalyzer = en.AnalyzerName
	im.IndexDynamic = false
	im.StoreDynamic = false
	im.DocValuesDynamic = false
	if err := im.AddCustomAnalyzer(analyzerWords, map[string]any{
		"type":          custom.Name,
		"tokenizer":     unicode.Name,
		"token_filters": []string{lowercase.Name},
	}); err != nil {
		panic(err) // static configuration: cannot fail
	}
	text := func(name, analyzer string) *mapping.FieldMapping {
		f := bleve.NewTextFieldMapping()
		f.Name = name
		f.Analyzer = analyzer
		f.Store = false
		f.IncludeInAll = false
		f.IncludeTermVectors = false
		f.DocValues = false
		return f
	}
	doc := bleve.NewDocumentStaticMapping()
	doc.AddFieldMappingsAt("name", text(fieldName, en.AnalyzerName), text(fieldNameWords, analyzerWords))
	doc.AddFieldMappingsAt("description", text(fieldDescription, en.AnalyzerName), text(fieldDescWords, analyzerWords))
	exact := bleve.NewKeywordFieldMapping()
	exact.Name = fieldCategoryID
	exact.Store = false
	exact.IncludeInAll = false
	exact.IncludeTermVectors = false
	exact.DocValues = true
	doc.AddFieldMappingsAt("category", text(fieldCategory, en.AnalyzerName), exact)
	number := func(name string, store bool) *mapping.FieldMapping {
		f := bleve.NewNumericFieldMapping()
		f.Name = name
		f.Store = store
		f.IncludeInAll = false
		f.DocValues = true
		return f
	}
	doc.AddFieldMappingsAt("price", number(fieldPrice, false))
	doc.AddFieldMappingsAt("listed_at", number(fieldListedAt, true))
	im.DefaultMapping = doc
	return im
}

// Put indexes d under id, replacing any document already there. A zero
// d.ListedAt keeps the listing time indexed for id, if any.
func (x *Index) Put(id string, d Document) error {
	doc := indexed{Name: d.Name, Description: d.Description, Category: d.Category, Price: float64(d.Price)}
	if d.ListedAt.IsZero() {
		ms, err := x.listedAt(id)
		if err != nil {
			return fmt.Errorf("search: index %s: %w", id, err)
		}
		doc.ListedAt = ms
	} else {
		doc.ListedAt = float64(d.ListedAt.UnixMilli())
	}
	if err := x.bi.Index(id, doc); err != nil {
		return fmt.Errorf("search: index %s: %w", id, err)
	}
	return nil
}

// listedAt is the listing time (Unix milliseconds) indexed for id; 0 when id
// is not indexed or has none.
func (x *Index) listedAt(id string) (float64, error) {
	req := bleve.NewSearchRequestOptions(bleve.NewDocIDQuery([]string{id}), 1, 0, false)
	req.Fields = []string{fieldListedAt}
	res, err := x.bi.Search(req)
	if err != nil {
		return 0, err
	}
	if len(res.Hits) == 0 {
		return 0, nil
	}
	ms, _ := res.Hits[0].Fields[fieldListedAt].(float64)
	return ms, nil
}

// Delete removes the document id; deleting a missing one is not an error.
func (x *Index) Delete(id string) error {
	if err := x.bi.Delete(id); err != nil {
		return fmt.Errorf("search: delete %s: %w", id, err)
	}
	return nil
}

// Count is the number of documents in the index.
func (x *Index) Count() (uint64, error) { return x.bi.DocCount() }

// Ping reports whether the index can be read.
func (x *Index) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	_, err := x.bi.DocCount()
	return err
}

// Close flushes and closes the index.
func (x *Index) Close() error { return x.bi.Close() }

// words splits s into the lower-cased words the "…_words" fields hold.
func (x *Index) words(s string) []string {
	a := x.bi.Mapping().AnalyzerNamed(analyzerWords)
	if a == nil {
		return nil
	}
	var out []string
	for _, tok := range a.Analyze([]byte(s)) {
		out = append(out, string(tok.Term))
	}
	return out
}
