package order

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
	"github.com/globomantics/globomantics/internal/platform/page"
)

// RangeQuery asks for the orders created in [From, To), newest first
// (CreatedAt, then id, both descending), at most Limit of them, starting
// right after the order at After (from the newest when nil).
type RangeQuery struct {
	From, To time.Time
	After    *ListKey
	Limit    int
}

// MissingShards is a range of logical shards, Lo to Hi inclusive, whose node
// did not answer a query over every node, and why (operator detail).
type MissingShards struct {
	Lo    int    `json:"lo"`
	Hi    int    `json:"hi"`
	Error string `json:"error"`
}

// RangeResult is what a RangeStore found: the orders of the nodes that
// answered, how many orders of the range those nodes hold (all pages), by
// status, and the shards whose node did not answer.
type RangeResult struct {
	Orders        []Order
	CountByStatus map[string]int
	MissingShards []MissingShards
}

// RangeStore is the optional part of a Store that lists every user's orders
// over a time range, asking every node of a sharded store at once.
type RangeStore interface {
	// ListRange returns at most q.Limit orders of q's range from the nodes
	// that answered within the store's per-node deadline, newest first, and
	// names the shards of the others in MissingShards: a node that is down
	// does not fail the call. It fails only when no node answered
	// (errs.Unavailable).
	ListRange(ctx context.Context, q RangeQuery) (RangeResult, error)
}

// AdminPage is one page of the operators' list of orders in a time range.
// Total and Counts cover the whole range on the shards that answered, not
// just this page. MissingShards names the shards whose node did not answer:
// their orders are neither listed nor counted.
type AdminPage struct {
	Items         []Order         `json:"items"`
	Total         int             `json:"total"`
	Counts        map[string]int  `json:"counts"`
	MissingShards []MissingShards `json:"missing_shards"`
	NextPageToken string          `json:"next_page_token"`
}

// Admin is the order service's operator API, served on the internal API
// only (never through the storefront).
type Admin interface {
	// AdminListOrders returns a page of every user's orders created in
	// [from, to), newest first, keyset-paginated; errs.Invalid for a range
	// that is empty or reversed, errs.BadRequest for a bad page token,
	// errs.Unavailable when no node answered.
	AdminListOrders(ctx context.Context, from, to time.Time, p page.Request) (AdminPage, error)
}

var (
	_ Admin = (*Service)(nil)
	_ Admin = (*Client)(nil)
)

// adminList names the operators' list of [from, to) in page tokens.
func adminList(from, to time.Time) string {
	return "orders/range/" + strconv.FormatInt(from.UnixMilli(), 10) + "/" + strconv.FormatInt(to.UnixMilli(), 10)
}

// AdminListOrders implements Admin over a store that is a RangeStore;
// errs.Unavailable over one that is not.
func (s *Service) AdminListOrders(ctx context.Context, from, to time.Time, p page.Request) (AdminPage, error) {
	const op = "order.AdminListOrders"
	if from.IsZero() || to.IsZero() || !from.Before(to) {
		return AdminPage{}, errs.E(op, errs.Invalid, errs.Msg("from and to must be set, from before to"))
	}
	rs, ok := s.store.(RangeStore)
	if !ok {
		return AdminPage{}, errs.E(op, errs.Unavailable, errs.Msg("this store cannot list orders by time"))
	}
	p = clampPage(p)
	list := adminList(from, to)
	var after *ListKey
	key, err := p.After(list, 2)
	if err != nil {
		return AdminPage{}, err
	}
	if key != nil {
		ms, err := strconv.ParseInt(key[0], 10, 64)
		if err != nil || key[1] == "" {
			return AdminPage{}, page.BadToken(op)
		}
		after = &ListKey{CreatedAtMillis: ms, ID: key[1]}
	}
	r, err := rs.ListRange(ctx, RangeQuery{From: from, To: to, After: after, Limit: p.Size + 1})
	if err != nil {
		return AdminPage{}, errs.E(op, err)
	}
	out := AdminPage{Items: r.Orders, Counts: r.CountByStatus, MissingShards: r.MissingShards}
	if out.Counts == nil {
		out.Counts = map[string]int{}
	}
	if out.MissingShards == nil {
		out.MissingShards = []MissingShards{}
	}
	for _, n := range out.Counts {
		out.Total += n
	}
	out.NextPageToken = p.Next(list, len(out.Items), func() []string {
		last := out.Items[p.Size-1]
		return []string{strconv.FormatInt(last.CreatedAt.UnixMilli(), 10), last.ID}
	})
	if len(out.Items) > p.Size {
		out.Items = out.Items[:p.Size]
	}
	return out, nil
}

// adminOrdersPath is the operators' list: GET with from, to (RFC 3339),
// page_size and page_token.
const adminOrdersPath = Prefix + "admin/orders"

// adminListHandler serves GET admin/orders?from=&to=&page_size=&page_token=.
func adminListHandler(a Admin) http.Handler {
	return httpx.Handler(func(w http.ResponseWriter, r *http.Request) error {
		const op = "order.http.adminList"
		q, err := httpx.Query(r)
		if err != nil {
			return err
		}
		from, err1 := time.Parse(time.RFC3339Nano, q.Get("from"))
		to, err2 := time.Parse(time.RFC3339Nano, q.Get("to"))
		if err1 != nil || err2 != nil {
			return errs.E(op, errs.BadRequest, errs.Msg("from and to must be RFC 3339 times"))
		}
		p, err := page.Parse(q.Get("page_size"), q.Get("page_token"))
		if err != nil {
			return err
		}
		pg, err := a.AdminListOrders(r.Context(), from, to, p)
		if err != nil {
			return err
		}
		httpx.WriteJSON(w, http.StatusOK, pg)
		return nil
	})
}

// AdminListOrders asks the order service for a page of the operators' list.
func (c *Client) AdminListOrders(ctx context.Context, from, to time.Time, p page.Request) (AdminPage, error) {
	v := url.Values{}
	v.Set("from", from.UTC().Format(time.RFC3339Nano))
	v.Set("to", to.UTC().Format(time.RFC3339Nano))
	if p.Size > 0 {
		v.Set("page_size", strconv.Itoa(p.Size))
	}
	if p.Token != "" {
		v.Set("page_token", p.Token)
	}
	var out AdminPage
	if err := c.c.Call(ctx, http.MethodGet, adminOrdersPath+"?"+v.Encode(), nil, &out); err != nil {
		return AdminPage{}, err
	}
	return out, nil
}
