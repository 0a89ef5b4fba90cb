package search

import (
	"context"
	"errors"
	"fmt"

	"github.com/blevesearch/bleve/v2"
	"github.com/blevesearch/bleve/v2/analysis/analyzer/custom"
	"github.com/blevesearch/bleve/v2/analysis/lang/en"
	"github.com/blevesearch/bleve/v2/analysis/token/lowercase"
	"github.com/blevesearch/bleve/v2/analysis/tokenizer/single"
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

	analyzerWords   = "globo_words"   // unicode words, lower-cased
	analyzerKeyword = "globo_keyword" // the whole value as one term, lower-cased
)

// mappingVersion names the index layout built by newMapping. An index built
// with another version is refused by OpenIndex rather than silently searched
// with the wrong analyzers; bump it whenever newMapping changes.
const mappingVersion = "globo-search-v1"

var mappingVersionKey = []byte("globo_mapping_version")

// Document is what the index holds for one product; the product id is the
// document id.
type Document struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Category    string `json:"category"`
}

// Index is a persistent full-text index of products, safe for concurrent use.
type Index struct {
	bi  bleve.Index
	dir string
}

// OpenIndex opens the scorch index in dir, creating it (and dir) if it does
// not exist. It fails if the directory holds an index of another layout, or
// if another process keeps the index open for more than ten seconds.
func OpenIndex(dir string) (*Index, error) {
	bi, err := bleve.OpenUsing(dir, map[string]any{"bolt_timeout": "10s"})
	switch {
	case errors.Is(err, bleve.ErrorIndexPathDoesNotExist) || errors.Is(err, bleve.ErrorIndexMetaMissing):
		bi, err = bleve.NewUsing(dir, newMapping(), scorch.Name, scorch.Name, map[string]any{"bolt_timeout": "10s"})
		if err != nil {
			return nil, fmt.Errorf("search: create index %s: %w", dir, err)
		}
		if err := bi.SetInternal(mappingVersionKey, []byte(mappingVersion)); err != nil {
			bi.Close()
			return nil, fmt.Errorf("search: create index %s: %w", dir, err)
		}
	case err != nil:
		if bi != nil {
			bi.Close()
		}
		return nil, fmt.Errorf("search: open index %s: %w", dir, err)
	default:
		v, err := bi.GetInternal(mappingVersionKey)
		if err != nil {
			bi.Close()
			return nil, fmt.Errorf("search: open index %s: %w", dir, err)
		}
		if string(v) != mappingVersion {
			bi.Close()
			return nil, fmt.Errorf("search: index %s has layout %q, want %q: remove it and let the search consumer re-read the catalog events", dir, v, mappingVersion)
		}
	}
	return &Index{bi: bi, dir: dir}, nil
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
	if err := im.AddCustomAnalyzer(analyzerKeyword, map[string]any{
		"type":          custom.Name,
		"tokenizer":     single.Name,
		"token_filters": []string{lowercase.Name},
	}); err != nil {
		panic(err)
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
	doc.AddFieldMappingsAt("category", text(fieldCategory, analyzerKeyword))
	im.DefaultMapping = doc
	return im
}

// Put indexes d under id, replacing any document already there.
func (x *Index) Put(id string, d Document) error {
	if err := x.bi.Index(id, d); err != nil {
		return fmt.Errorf("search: index %s: %w", id, err)
	}
	return nil
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
