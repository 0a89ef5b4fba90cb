package catalog

import (
	"context"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/money"
)

// The checks of a product's fields, shared by ListItem and UpdateProduct; each
// is errs.Invalid with a message naming the field.

func checkName(op, name string) error {
	switch {
	case name == "":
		return errs.E(op, errs.Invalid, errs.Msg("name must not be empty"))
	case utf8.RuneCountInString(name) > MaxNameLen:
		return errs.E(op, errs.Invalid, errs.Msg("name must be at most %d characters", MaxNameLen))
	case !utf8.ValidString(name):
		return errs.E(op, errs.Invalid, errs.Msg("name and description must be valid UTF-8"))
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		// Order lines and e-mail subjects carry the name: one line only.
		return errs.E(op, errs.Invalid, errs.Msg("name must not contain control characters"))
	}
	return nil
}

func checkDescription(op, desc string) error {
	switch {
	case !utf8.ValidString(desc):
		return errs.E(op, errs.Invalid, errs.Msg("name and description must be valid UTF-8"))
	case utf8.RuneCountInString(desc) > MaxDescriptionLen:
		return errs.E(op, errs.Invalid, errs.Msg("description must be at most %d characters", MaxDescriptionLen))
	}
	return nil
}

func checkPrice(op string, p money.Money) error {
	switch {
	case p.Currency != "" && p.Currency != money.Currency:
		return errs.E(op, errs.Invalid, errs.Msg("price must be in %s", money.Currency))
	case p.Amount <= 0:
		return errs.E(op, errs.Invalid, errs.Msg("price must be positive"))
	case p.Amount > MaxPrice:
		return errs.E(op, errs.Invalid, errs.Msg("price must be at most %s", money.USD(MaxPrice)))
	}
	return nil
}

func checkStock(op string, n int) error {
	switch {
	case n < 0:
		return errs.E(op, errs.Invalid, errs.Msg("stock must not be negative"))
	case n > MaxStock:
		return errs.E(op, errs.Invalid, errs.Msg("stock must be at most %d", MaxStock))
	}
	return nil
}

func checkCategory(op, id string) error {
	if id == "" {
		return errs.E(op, errs.Invalid, errs.Msg("category must not be empty"))
	}
	return nil
}

// UpdateProduct applies a partial change to a product (see API and
// ProductChange) and returns the product as changed. The change and its
// ProductChanged event are one transaction; after the commit this instance's
// cache forgets the product at once (and will not serve an older copy, from
// the cache or a lagging replica, again), and the outbox relay is kicked so
// that the other instances learn of it through HandleProductChanged.
func (s *Service) UpdateProduct(ctx context.Context, id string, ch ProductChange) (Product, error) {
	const op = "catalog.UpdateProduct"
	if strings.TrimSpace(id) == "" {
		return Product{}, errs.E(op, errs.NotFound, errs.Msg("no such product"))
	}
	if ch.IfVersion < 0 {
		return Product{}, errs.E(op, errs.Invalid, errs.Msg("version must not be negative"))
	}
	clean := ProductChange{IfVersion: ch.IfVersion}
	var checks []error
	if ch.Name != nil {
		v := strings.TrimSpace(*ch.Name)
		clean.Name = &v
		checks = append(checks, checkName(op, v))
	}
	if ch.Description != nil {
		v := strings.TrimSpace(*ch.Description)
		clean.Description = &v
		checks = append(checks, checkDescription(op, v))
	}
	if ch.Category != nil {
		v := strings.TrimSpace(*ch.Category)
		clean.Category = &v
		checks = append(checks, checkCategory(op, v))
	}
	if ch.Price != nil {
		checks = append(checks, checkPrice(op, *ch.Price))
		v := money.USD(ch.Price.Amount)
		clean.Price = &v
	}
	if ch.Stock != nil {
		v := *ch.Stock
		clean.Stock = &v
		checks = append(checks, checkStock(op, v))
	}
	if len(checks) == 0 {
		return Product{}, errs.E(op, errs.Invalid, errs.Msg("nothing to change: give name, description, category, price or stock"))
	}
	for _, err := range checks {
		if err != nil {
			return Product{}, err
		}
	}
	rec, err := s.store.UpdateProduct(ctx, id, clean, s.clk.Now())
	if err != nil {
		return Product{}, errs.E(op, err)
	}
	s.raiseFloor(id, rec.Version)
	s.forget(ctx, id)
	s.kick()
	return rec.Product(), nil
}

// HandleProductChanged is the bus handler by which an instance learns of a
// change another instance made (every instance needs a durable consumer of
// its own on SubjectProductChanged): it drops the cached copy of the
// product unless that copy is at the event's version or newer already (as in
// a cache shared with the instance that made the change, which dropped it),
// and from then on this instance serves no copy older than the event's
// version, whether from its cache or from a replica that has not caught up.
// Events of other subjects are ignored; a malformed one is logged and
// dropped, as it can never succeed. It never fails otherwise (a cache that
// cannot be reached is a miss for reads anyway).
func (s *Service) HandleProductChanged(ctx context.Context, ev bus.Event) error {
	if ev.Type != SubjectProductChanged {
		return nil
	}
	var pc ProductChanged
	if err := ev.Decode(&pc); err != nil || strings.TrimSpace(pc.ProductID) == "" {
		s.log.ErrorContext(ctx, "catalog: malformed product_changed event dropped", "event", ev.ID, "err", err)
		return nil
	}
	s.raiseFloor(pc.ProductID, pc.Version)
	if _, fresh := s.cached(ctx, pc.ProductID); fresh {
		// A cache shared with the instance that made the change (or one
		// that already read it) holds the new copy already: keep it.
		s.loads.Forget(pc.ProductID)
	} else {
		s.forget(ctx, pc.ProductID)
	}
	s.log.DebugContext(ctx, "catalog: product changed elsewhere, cache entry dropped",
		"product", pc.ProductID, "version", pc.Version, "event", ev.ID)
	return nil
}

// floorTTL is how long a floor is kept: longer than a load begun before the
// change may take (loadTimeout) plus the life of the copy it would cache.
func (s *Service) floorTTL() time.Duration { return loadTimeout + s.cacheTTL + time.Second }

// raiseFloor records that versions of product id below version must no
// longer be served.
func (s *Service) raiseFloor(id string, version int64) {
	now := s.clk.Now()
	s.floorMu.Lock()
	defer s.floorMu.Unlock()
	if s.floors == nil {
		s.floors = make(map[string]floor)
	}
	ttl := s.floorTTL()
	if now.Sub(s.floorSweep) > ttl {
		for k, f := range s.floors {
			if !now.Before(f.until) {
				delete(s.floors, k)
			}
		}
		s.floorSweep = now
	}
	f, ok := s.floors[id]
	if !ok || !now.Before(f.until) {
		f = floor{}
	}
	f.version = max(f.version, version)
	f.until = now.Add(ttl)
	s.floors[id] = f
}

// floorOf is the lowest version of product id that may be served now (0 for
// any).
func (s *Service) floorOf(id string) int64 {
	s.floorMu.Lock()
	defer s.floorMu.Unlock()
	f, ok := s.floors[id]
	if !ok {
		return 0
	}
	if !s.clk.Now().Before(f.until) {
		delete(s.floors, id)
		return 0
	}
	return f.version
}

// fromPrimary reads one product from the primary database; errs.NotFound.
func (s *Service) fromPrimary(ctx context.Context, id string) (Record, error) {
	recs, err := s.store.GetProducts(ctx, []string{id})
	if err != nil {
		return Record{}, err
	}
	for _, r := range recs {
		if r.ID == id {
			return r, nil
		}
	}
	return Record{}, errs.E(errs.NotFound, errs.Msg("no such product"))
}
