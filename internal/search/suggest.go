package search

import (
	"context"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/blevesearch/bleve/v2"
	index "github.com/blevesearch/bleve_index_api"
)

// Spelling correction ("did you mean"). A word of a query that no product's
// name or description holds is replaced by the nearest word they do hold:
// within one edit for words of up to five letters, two for longer ones
// ("lamb" → "lamp", "lanturn" → "lantern"); of equally near words, the one
// in most products. Words shorter than minSuggestLen are left alone.
const (
	minSuggestLen    = 3
	longWordForTwo   = 6 // words this long may be two edits away
	maxSuggestEdits  = 2
	suggestCandidate = 50 // nearest words looked at per word
)

// suggestFields are the dictionaries suggestions come from: the words of
// names and descriptions, unstemmed.
var suggestFields = []string{fieldNameWords, fieldDescWords}

// suggest returns a corrected text for q that has results (within q's
// filters), or "" when no word needs correcting or the correction finds
// nothing either.
func (s *Service) suggest(ctx context.Context, q Query) (string, error) {
	words := s.idx.words(q.Text)
	if len(words) == 0 {
		return "", nil
	}
	adv, err := s.idx.bi.Advanced()
	if err != nil {
		return "", err
	}
	r, err := adv.Reader()
	if err != nil {
		return "", err
	}
	defer r.Close()
	fuzzy, ok := r.(index.IndexReaderFuzzy)
	if !ok {
		return "", nil // an index kind without fuzzy dictionaries: no suggestions
	}
	changed := false
	out := make([]string, len(words))
	for i, w := range words {
		out[i] = w
		if utf8.RuneCountInString(w) < minSuggestLen {
			continue
		}
		best, err := s.nearest(ctx, r, fuzzy, w)
		if err != nil {
			return "", err
		}
		if best != "" && best != w {
			out[i] = best
			changed = true
		}
	}
	if !changed {
		return "", nil
	}
	alt := q
	alt.Text = strings.Join(out, " ")
	req := bleve.NewSearchRequestOptions(conjunction(s.buildQuery(alt.Text), categoryFilter(alt), priceFilter(alt)), 0, 0, false)
	res, err := s.run(ctx, req)
	if err != nil {
		return "", err
	}
	if res.Total == 0 {
		return "", nil
	}
	return alt.Text, nil
}

// nearest is the word of the suggestion fields nearest to w: w itself when
// they hold it, "" when none is near enough.
func (s *Service) nearest(ctx context.Context, r index.IndexReader, fz index.IndexReaderFuzzy, w string) (string, error) {
	edits := 1
	if utf8.RuneCountInString(w) >= longWordForTwo {
		edits = maxSuggestEdits
	}
	type cand struct {
		dist  uint8
		count uint64
	}
	cands := map[string]cand{}
	for _, field := range suggestFields {
		fd, fa, err := fz.FieldDictFuzzyAutomaton(field, w, edits, "")
		if err != nil {
			return "", fmt.Errorf("search: fuzzy dictionary of %s: %w", field, err)
		}
		n := 0
		for n < suggestCandidate {
			e, err := fd.Next()
			if err != nil {
				fd.Close()
				return "", err
			}
			if e == nil {
				break
			}
			n++
			ok, dist := fa.MatchAndDistance(e.Term)
			if !ok {
				continue
			}
			if dist == 0 {
				fd.Close()
				return w, nil
			}
			c := cands[e.Term]
			c.dist = dist
			cands[e.Term] = c
		}
		if err := fd.Close(); err != nil {
			return "", err
		}
	}
	best, bestC := "", cand{}
	for term, c := range cands {
		// The fuzzy dictionary leaves counts out: count the products now,
		// and skip words only deleted products had.
		for _, field := range suggestFields {
			tfr, err := r.TermFieldReader(ctx, []byte(term), field, false, false, false)
			if err != nil {
				return "", err
			}
			c.count += tfr.Count()
			tfr.Close()
		}
		if c.count == 0 {
			continue
		}
		if best == "" || c.dist < bestC.dist || (c.dist == bestC.dist && (c.count > bestC.count || (c.count == bestC.count && term < best))) {
			best, bestC = term, c
		}
	}
	return best, nil
}
