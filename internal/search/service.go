package search

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/blevesearch/bleve/v2"
	"github.com/blevesearch/bleve/v2/search/query"

	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/page"
)

// Query limits.
const (
	// MaxQueryLen is the longest query accepted, in characters.
	MaxQueryLen = 200
	// MaxResultWindow is how deep into the results paging reaches: a page
	// starting at or beyond it is a BadRequest, one crossing it is cut
	// short. It keeps a crafted page token from making a search collect an
	// unbounded number of hits.
	MaxResultWindow = 10000
)

// Relative weights of the parts of a query. A word in the name counts three
// times a word in the description; prefix and fuzzy matches count less than
// whole words in the same field.
const (
	boostName         = 3.0
	boostDescription  = 1.0
	boostCategory     = 2.0
	boostNamePrefix   = 2.0
	boostDescPrefix   = 0.5
	boostNameFuzzy    = 1.0
	boostDescFuzzy    = 0.3
	minPrefixLen      = 2 // the last word must have this many letters to be a prefix
	minFuzzyLen       = 5 // words this long tolerate one typo
	fuzzinessForWords = 1
)

// Service is the search service over an Index.
type Service struct {
	idx *Index
	log *slog.Logger
}

var _ API = (*Service)(nil)

// NewService returns the search service over idx. It does not own idx: the
// caller closes it after the service is done.
func NewService(idx *Index, log *slog.Logger) *Service {
	if log == nil {
		log = slog.Default()
	}
	return &Service{idx: idx, log: log}
}

// resultsList names the results of query q, best first, in page tokens, so a
// token of one query is refused for another. It holds a digest of q, not q.
func resultsList(q string) string {
	sum := sha256.Sum256([]byte(q))
	return "search/score/" + hex.EncodeToString(sum[:9])
}

// Search finds products matching q, best first. Products with the same score
// come in product-id order, so pages do not overlap.
//
// Unlike the stores' lists, search pages by position: the token holds the
// offset of the next page (versioned, and bound to a digest of q so a token
// of one query is refused for another). A keyset on (score, id), which bleve
// could seek with search_after, would be worse here: scores depend on the
// whole index's term statistics, so one product indexed between two pages
// shifts every score and would replay or skip the rest of the results,
// where an offset shifts by the few products added. errs.BadRequest for a bad
// query, size or token, or a page beyond MaxResultWindow.
func (s *Service) Search(ctx context.Context, q string, p page.Request) (Result, error) {
	const op = "search.Search"
	q = strings.TrimSpace(q)
	switch {
	case q == "":
		return Result{}, errs.E(op, errs.BadRequest, errs.Msg("query must not be empty"))
	case !utf8.ValidString(q):
		return Result{}, errs.E(op, errs.BadRequest, errs.Msg("query must be valid UTF-8"))
	case utf8.RuneCountInString(q) > MaxQueryLen:
		return Result{}, errs.E(op, errs.BadRequest, errs.Msg("query must be at most %d characters", MaxQueryLen))
	}
	p, err := p.CheckSize(op)
	if err != nil {
		return Result{}, err
	}
	list := resultsList(q)
	offset := 0
	if key, err := p.After(list, 1); err != nil {
		return Result{}, err
	} else if key != nil {
		if offset, err = strconv.Atoi(key[0]); err != nil || offset < 1 {
			return Result{}, page.BadToken(op)
		}
	}
	if offset >= MaxResultWindow {
		return Result{}, errs.E(op, errs.BadRequest, errs.Msg("only the first %d results can be paged through; refine the query", MaxResultWindow))
	}
	size := min(p.Size, MaxResultWindow-offset)

	req := bleve.NewSearchRequestOptions(s.buildQuery(q), size, offset, false)
	req.SortBy([]string{"-_score", "_id"})
	res, err := s.idx.bi.SearchInContext(ctx, req)
	if err != nil {
		if ctx.Err() != nil {
			return Result{}, errs.E(op, errs.Unavailable, ctx.Err())
		}
		return Result{}, errs.E(op, err)
	}
	out := Result{Hits: make([]Hit, 0, len(res.Hits)), Total: int(res.Total)}
	for _, h := range res.Hits {
		out.Hits = append(out.Hits, Hit{ProductID: h.ID, Score: h.Score})
	}
	if next := offset + len(res.Hits); len(res.Hits) > 0 && uint64(next) < res.Total && next < MaxResultWindow {
		out.NextPageToken = page.Token(list, strconv.Itoa(next))
	}
	return out, nil
}

// SearchToken is the page token of the results of q starting at offset, for
// callers (and tests) that page by position; "" for offset 0.
func SearchToken(q string, offset int) string {
	if offset <= 0 {
		return ""
	}
	return page.Token(resultsList(strings.TrimSpace(q)), strconv.Itoa(offset))
}

// buildQuery is the disjunction behind Search: whole (stemmed) words in the
// name, description and category; the last word as a prefix, so results
// follow the user while typing; and, for longer words, one typo.
func (s *Service) buildQuery(q string) query.Query {
	var parts []query.Query

	match := func(field string, boost float64) {
		m := bleve.NewMatchQuery(q)
		m.SetField(field)
		m.SetBoost(boost)
		parts = append(parts, m)
	}
	match(fieldName, boostName)
	match(fieldDescription, boostDescription)
	match(fieldCategory, boostCategory) // the whole query as a category

	words := s.idx.words(q)
	seen := make(map[string]bool, len(words))
	for i, w := range words {
		if !seen[w] {
			seen[w] = true
			t := bleve.NewTermQuery(w) // one word of the query as a category
			t.SetField(fieldCategory)
			t.SetBoost(boostCategory)
			parts = append(parts, t)
			if utf8.RuneCountInString(w) >= minFuzzyLen {
				for _, f := range []struct {
					field string
					boost float64
				}{{fieldNameWords, boostNameFuzzy}, {fieldDescWords, boostDescFuzzy}} {
					fz := bleve.NewFuzzyQuery(w)
					fz.SetField(f.field)
					fz.SetFuzziness(fuzzinessForWords)
					fz.SetBoost(f.boost)
					parts = append(parts, fz)
				}
			}
		}
		if i == len(words)-1 && utf8.RuneCountInString(w) >= minPrefixLen {
			for _, f := range []struct {
				field string
				boost float64
			}{{fieldNameWords, boostNamePrefix}, {fieldDescWords, boostDescPrefix}} {
				pq := bleve.NewPrefixQuery(w)
				pq.SetField(f.field)
				pq.SetBoost(f.boost)
				parts = append(parts, pq)
			}
		}
	}
	return bleve.NewDisjunctionQuery(parts...)
}

// HandleEvent feeds the index from the bus: a catalog ItemListed or
// ProductChanged event (whose body carries the same fields, the product as
// it now is) indexes the product under its id, so a redelivered event
// changes nothing; the consumer has one message in flight, so events of
// one product are applied in their order. Events of other subjects are
// ignored. A malformed event is logged and
// dropped (it can never succeed); an indexing failure is returned so the bus
// redelivers the event.
func (s *Service) HandleEvent(ctx context.Context, ev bus.Event) error {
	if ev.Type != catalog.SubjectItemListed && ev.Type != catalog.SubjectProductChanged {
		return nil
	}
	var it catalog.ItemListed
	if err := ev.Decode(&it); err != nil {
		s.log.Error("search: undecodable item_listed event dropped", "event", ev.ID, "err", err)
		return nil
	}
	if strings.TrimSpace(it.ProductID) == "" {
		s.log.Error("search: item_listed event without product id dropped", "event", ev.ID)
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.idx.Put(it.ProductID, Document{Name: it.Name, Description: it.Description, Category: it.Category}); err != nil {
		return errs.E("search.HandleEvent", err)
	}
	s.log.Debug("search: indexed product", "product", it.ProductID, "event", ev.ID)
	return nil
}
