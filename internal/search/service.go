package search

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/blevesearch/bleve/v2"
	"github.com/blevesearch/bleve/v2/search"
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

// resultsList names the results of q (normalised by Check) in page tokens,
// so a token of one query, order or filter is refused for another. It holds
// a digest of the query, not the query; a relevance-ordered query without
// filters keeps the name it had before sorts and filters existed.
func resultsList(q Query) string {
	key := q.Text
	if q.Filtered() {
		key = strings.Join([]string{q.Text, q.Category, strconv.FormatInt(q.MinPrice, 10), strconv.FormatInt(q.MaxPrice, 10)}, "\x00")
	}
	sum := sha256.Sum256([]byte(key))
	order := "score"
	if q.Sort != SortRelevance {
		order = string(q.Sort)
	}
	return "search/" + order + "/" + hex.EncodeToString(sum[:9])
}

// maxCategoryFacets bounds the categories the category facet lists.
const maxCategoryFacets = 100

// Search finds products matching q, filtered and in the order q asks for,
// with the facets of its results and, when there are none, a suggestion.
// Products that tie in that order come in product-id order, so pages do not
// overlap.
//
// Unlike the stores' lists, search pages by position: the token holds the
// offset of the next page (versioned, and bound to a digest of the query,
// its order and filters, so a token of one is refused for another). A keyset
// on (score, id), which bleve could seek with search_after, would be worse
// here: scores depend on the whole index's term statistics, so one product
// indexed between two pages shifts every score and would replay or skip the
// rest of the results, where an offset shifts by the few products added.
// errs.BadRequest for a bad query, size or token, or a page beyond
// MaxResultWindow.
func (s *Service) Search(ctx context.Context, q Query, p page.Request) (Result, error) {
	const op = "search.Search"
	q, err := q.Check()
	if err != nil {
		return Result{}, err
	}
	p, err = p.CheckSize(op)
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

	text := s.buildQuery(q.Text)
	catFilter, priceFilter := categoryFilter(q), priceFilter(q)
	req := bleve.NewSearchRequestOptions(conjunction(text, catFilter, priceFilter), size, offset, false)
	req.SortByCustom(sortOrder(q.Sort))
	// Each facet counts within the other facet's filter but not its own: a
	// facet whose filter is in force needs a search of its own.
	if catFilter == nil {
		req.AddFacet(fieldCategoryID, categoryFacet())
	}
	if priceFilter == nil {
		req.AddFacet(fieldPrice, priceFacet())
	}
	res, err := s.run(ctx, req)
	if err != nil {
		return Result{}, errs.E(op, err)
	}
	out := Result{Hits: make([]Hit, 0, len(res.Hits)), Total: int(res.Total), Start: offset}
	if prev := offset - p.Size; prev > 0 {
		out.PrevPageToken = page.Token(list, strconv.Itoa(prev))
	}
	for _, h := range res.Hits {
		out.Hits = append(out.Hits, Hit{ProductID: h.ID, Score: h.Score})
	}
	if next := offset + len(res.Hits); len(res.Hits) > 0 && uint64(next) < res.Total && next < MaxResultWindow {
		out.NextPageToken = page.Token(list, strconv.Itoa(next))
	}

	catFacets, priceFacets := res.Facets[fieldCategoryID], res.Facets[fieldPrice]
	if catFilter != nil {
		if catFacets, err = s.facet(ctx, conjunction(text, priceFilter), fieldCategoryID, categoryFacet()); err != nil {
			return Result{}, errs.E(op, err)
		}
	}
	if priceFilter != nil {
		if priceFacets, err = s.facet(ctx, conjunction(text, catFilter), fieldPrice, priceFacet()); err != nil {
			return Result{}, errs.E(op, err)
		}
	}
	out.Facets = facets(catFacets, priceFacets)

	if out.Total == 0 && offset == 0 {
		if out.Suggestion, err = s.suggest(ctx, q); err != nil {
			return Result{}, errs.E(op, err)
		}
	}
	return out, nil
}

// run runs req, making a cancelled context's failure Unavailable.
func (s *Service) run(ctx context.Context, req *bleve.SearchRequest) (*bleve.SearchResult, error) {
	res, err := s.idx.bi.SearchInContext(ctx, req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, errs.E(errs.Unavailable, ctx.Err())
		}
		return nil, err
	}
	return res, nil
}

// facet counts the results of qr by the one facet fr.
func (s *Service) facet(ctx context.Context, qr query.Query, name string, fr *bleve.FacetRequest) (*search.FacetResult, error) {
	req := bleve.NewSearchRequestOptions(qr, 0, 0, false)
	req.AddFacet(name, fr)
	res, err := s.run(ctx, req)
	if err != nil {
		return nil, err
	}
	return res.Facets[name], nil
}

func categoryFacet() *bleve.FacetRequest {
	return bleve.NewFacetRequest(fieldCategoryID, maxCategoryFacets)
}

func priceFacet() *bleve.FacetRequest {
	fr := bleve.NewFacetRequest(fieldPrice, len(PriceRanges))
	for _, r := range PriceRanges {
		lo := float64(r.Min)
		var hi *float64
		if r.Max != 0 {
			hi = ptr(float64(r.Max))
		}
		fr.AddNumericRange(priceRangeName(r), &lo, hi)
	}
	return fr
}

func priceRangeName(r PriceRange) string {
	return strconv.FormatInt(r.Min, 10) + "-" + strconv.FormatInt(r.Max, 10)
}

// facets turns bleve's facet results into Facets.
func facets(cats, prices *search.FacetResult) Facets {
	f := Facets{Categories: []CategoryCount{}, Prices: make([]PriceRange, len(PriceRanges))}
	if cats != nil {
		for _, t := range cats.Terms.Terms() {
			f.Categories = append(f.Categories, CategoryCount{Category: t.Term, Count: t.Count})
		}
		slices.SortFunc(f.Categories, func(a, b CategoryCount) int {
			return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Category, b.Category))
		})
	}
	counts := map[string]int{}
	if prices != nil {
		for _, r := range prices.NumericRanges {
			counts[r.Name] = r.Count
		}
	}
	for i, r := range PriceRanges {
		r.Count = counts[priceRangeName(r)]
		f.Prices[i] = r
	}
	return f
}

// categoryFilter is the query keeping q's category; nil for none.
func categoryFilter(q Query) query.Query {
	if q.Category == "" {
		return nil
	}
	t := bleve.NewTermQuery(q.Category)
	t.SetField(fieldCategoryID)
	t.SetBoost(0)
	return t
}

// priceFilter is the query keeping q's price range; nil for none.
func priceFilter(q Query) query.Query {
	if q.MinPrice == 0 && q.MaxPrice == 0 {
		return nil
	}
	var lo, hi *float64
	if q.MinPrice != 0 {
		lo = ptr(float64(q.MinPrice))
	}
	if q.MaxPrice != 0 {
		hi = ptr(float64(q.MaxPrice))
	}
	r := bleve.NewNumericRangeInclusiveQuery(lo, hi, ptr(true), ptr(false))
	r.SetField(fieldPrice)
	r.SetBoost(0)
	return r
}

// conjunction is the query all of qs (the nil ones left out) match.
func conjunction(qs ...query.Query) query.Query {
	var parts []query.Query
	for _, q := range qs {
		if q != nil {
			parts = append(parts, q)
		}
	}
	if len(parts) == 1 {
		return parts[0]
	}
	return bleve.NewConjunctionQuery(parts...)
}

// sortOrder is the order of results of sort; ties in product-id order.
func sortOrder(sort Sort) search.SortOrder {
	byID := &search.SortDocID{}
	field := func(name string, desc bool) *search.SortField {
		return &search.SortField{Field: name, Desc: desc, Type: search.SortFieldAsNumber, Missing: search.SortFieldMissingLast}
	}
	switch sort {
	case SortPriceAsc:
		return search.SortOrder{field(fieldPrice, false), byID}
	case SortPriceDesc:
		return search.SortOrder{field(fieldPrice, true), byID}
	case SortNewest:
		return search.SortOrder{field(fieldListedAt, true), byID}
	default:
		return search.SortOrder{&search.SortScore{Desc: true}, byID}
	}
}

func ptr[T any](v T) *T { return &v }

// SearchToken is the page token of the results of q starting at offset, for
// callers (and tests) that page by position; "" for offset 0 or a query
// Check refuses.
func SearchToken(q Query, offset int) string {
	q, err := q.Check()
	if offset <= 0 || err != nil {
		return ""
	}
	return page.Token(resultsList(q), strconv.Itoa(offset))
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
	match(fieldCategory, boostCategory) // any (stemmed) word of the query as a category: "book" finds "books"

	words := s.idx.words(q)
	seen := make(map[string]bool, len(words))
	for i, w := range words {
		if !seen[w] {
			seen[w] = true
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
	// ItemListed and ProductChanged share these fields' names.
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
	doc := Document{Name: it.Name, Description: it.Description, Category: it.Category, Price: it.Price.Amount, ListedAt: it.ListedAt}
	if err := s.idx.Put(it.ProductID, doc); err != nil {
		return errs.E("search.HandleEvent", err)
	}
	s.log.Debug("search: indexed product", "product", it.ProductID, "event", ev.ID)
	return nil
}
