package catalog

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
	"github.com/globomantics/globomantics/internal/platform/page"
)

// PathPrefix is the root of the catalog's REST API.
const PathPrefix = "/svc/catalog/v1/"

// MaxListItemBody is the largest POST products body: an 8 MB image grows by a
// third in base64, plus the other fields.
const MaxListItemBody = 12 << 20

// MaxBatchIDs is how many ids one GET products?ids= request may carry.
const MaxBatchIDs = 100

// CategoryList is the body of GET categories.
type CategoryList struct {
	Categories []Category `json:"categories"`
}

// ThumbnailsBody is the body of PUT products/{id}/thumbnails: blob keys by
// size name.
type ThumbnailsBody struct {
	Thumbnails map[string]string `json:"thumbnails"`
}

// ReservationBody is the body of PUT reservations/{id}. HoldMillis is how
// long the reservation holds its stock, in milliseconds; 0 means DefaultHold.
type ReservationBody struct {
	Lines      []Line `json:"lines"`
	HoldMillis int64  `json:"hold_ms,omitempty"`
}

// StockLevelList is the body of GET admin/stock.
type StockLevelList struct {
	Items []StockLevel `json:"items"`
}

// NewHandler serves api's REST API under /svc/catalog/v1/:
//
//	GET    categories                 -> CategoryList
//	GET    products?category=&page_size=&page_token= -> ProductPage
//	GET    products?ids=a,b,c         -> ProductPage of those products (no next page)
//	GET    products/{id}              -> Product, with ETag "v<version>"
//	PATCH  products/{id}              ProductChange (If-Match optional) -> Product, with its ETag
//	POST   products                   NewItem -> 201 Product
//	PUT    products/{id}/thumbnails   ThumbnailsBody -> 204
//	PUT    products/{id}/thumbnails/failure  ThumbnailFailure (reason) -> 204
//	GET    products/{id}/thumbnails/failure  -> ThumbnailFailure
//	PUT    reservations/{id}          ReservationBody -> 204 (idempotent)
//	POST   reservations/{id}/commit   -> 204 (idempotent)
//	DELETE reservations/{id}          -> 204 (idempotent)
//	GET    admin/stock                -> StockLevelList
func NewHandler(api API) http.Handler {
	h := &handler{api: api}
	mux := http.NewServeMux()
	mux.Handle("GET "+PathPrefix+"categories", httpx.Handler(h.listCategories))
	mux.Handle("GET "+PathPrefix+"products", httpx.Handler(h.listProducts))
	mux.Handle("GET "+PathPrefix+"products/{id}", httpx.Handler(h.getProduct))
	mux.Handle("PATCH "+PathPrefix+"products/{id}", httpx.Handler(h.updateProduct))
	mux.Handle("POST "+PathPrefix+"products", httpx.Handler(h.listItem))
	mux.Handle("PUT "+PathPrefix+"products/{id}/thumbnails", httpx.Handler(h.setThumbnails))
	mux.Handle("PUT "+PathPrefix+"products/{id}/thumbnails/failure", httpx.Handler(h.setThumbnailsFailed))
	mux.Handle("GET "+PathPrefix+"products/{id}/thumbnails/failure", httpx.Handler(h.thumbnailFailure))
	mux.Handle("PUT "+PathPrefix+"reservations/{id}", httpx.Handler(h.reserve))
	mux.Handle("POST "+PathPrefix+"reservations/{id}/commit", httpx.Handler(h.commit))
	mux.Handle("DELETE "+PathPrefix+"reservations/{id}", httpx.Handler(h.release))
	mux.Handle("GET "+PathPrefix+"admin/stock", httpx.Handler(h.stockLevels))
	mux.HandleFunc(PathPrefix, httpx.NotFound)
	return mux
}

type handler struct {
	api API
}

func (h *handler) listCategories(w http.ResponseWriter, r *http.Request) error {
	cats, err := h.api.ListCategories(r.Context())
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, CategoryList{Categories: cats})
	return nil
}

func (h *handler) listProducts(w http.ResponseWriter, r *http.Request) error {
	const op = "catalog.http.listProducts"
	q, err := httpx.Query(r)
	if err != nil {
		return err
	}
	if q.Has("ids") {
		if q.Has("category") || q.Has("page_size") || q.Has("page_token") {
			return errs.E(op, errs.BadRequest, errs.Msg("ids cannot be combined with category or paging"))
		}
		var idList []string
		for _, id := range strings.Split(q.Get("ids"), ",") {
			if id != "" {
				idList = append(idList, id)
			}
		}
		if len(idList) > MaxBatchIDs {
			return errs.E(op, errs.BadRequest, errs.Msg("at most %d ids per request", MaxBatchIDs))
		}
		items, err := h.api.GetProducts(r.Context(), idList)
		if err != nil {
			return err
		}
		httpx.WriteJSON(w, http.StatusOK, ProductPage{Items: items})
		return nil
	}
	p, err := page.Parse(q.Get("page_size"), q.Get("page_token"))
	if err != nil {
		return err
	}
	res, err := h.api.ListProducts(r.Context(), ProductFilter{Category: q.Get("category"), Page: p})
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, res)
	return nil
}

func (h *handler) getProduct(w http.ResponseWriter, r *http.Request) error {
	p, err := h.api.GetProduct(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	w.Header().Set("ETag", ETag(p.Version))
	httpx.WriteJSON(w, http.StatusOK, p)
	return nil
}

// ETag is the entity tag of a product at version: "v<version>", quoted.
func ETag(version int64) string { return `"v` + strconv.FormatInt(version, 10) + `"` }

// ParseIfMatch reads an If-Match header into the version UpdateProduct
// expects: 0 for none or "*" (any version of a product that exists), else
// the version of one strong ETag as made by ETag. errs.BadRequest for
// anything else (a list, a weak or foreign tag).
func ParseIfMatch(h string) (int64, error) {
	const op = "catalog.ParseIfMatch"
	h = strings.TrimSpace(h)
	if h == "" || h == "*" {
		return 0, nil
	}
	bad := errs.E(op, errs.BadRequest, errs.Msg(`If-Match must be one ETag of this product, such as "v3", or *`))
	tag, ok := strings.CutPrefix(h, `"v`)
	if !ok {
		return 0, bad
	}
	tag, ok = strings.CutSuffix(tag, `"`)
	if !ok {
		return 0, bad
	}
	v, err := strconv.ParseInt(tag, 10, 64)
	if err != nil || v < 1 || strconv.FormatInt(v, 10) != tag {
		return 0, bad
	}
	return v, nil
}

func (h *handler) updateProduct(w http.ResponseWriter, r *http.Request) error {
	var ch ProductChange
	if err := httpx.Decode(r, &ch); err != nil {
		return err
	}
	v, err := ParseIfMatch(r.Header.Get("If-Match"))
	if err != nil {
		return err
	}
	ch.IfVersion = v
	p, err := h.api.UpdateProduct(r.Context(), r.PathValue("id"), ch)
	if err != nil {
		return err
	}
	w.Header().Set("ETag", ETag(p.Version))
	httpx.WriteJSON(w, http.StatusOK, p)
	return nil
}

func (h *handler) listItem(w http.ResponseWriter, r *http.Request) error {
	var item NewItem
	if err := httpx.DecodeLimit(r, &item, MaxListItemBody); err != nil {
		return err
	}
	p, err := h.api.ListItem(r.Context(), item)
	if err != nil {
		return err
	}
	w.Header().Set("Location", PathPrefix+"products/"+p.ID)
	httpx.WriteJSON(w, http.StatusCreated, p)
	return nil
}

func (h *handler) setThumbnails(w http.ResponseWriter, r *http.Request) error {
	var body ThumbnailsBody
	if err := httpx.Decode(r, &body); err != nil {
		return err
	}
	if err := h.api.SetThumbnails(r.Context(), r.PathValue("id"), body.Thumbnails); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *handler) reserve(w http.ResponseWriter, r *http.Request) error {
	var body ReservationBody
	if err := httpx.Decode(r, &body); err != nil {
		return err
	}
	if body.HoldMillis < 0 {
		return errs.E("catalog.http.reserve", errs.Invalid, errs.Msg("hold_ms must not be negative"))
	}
	hold := time.Duration(min(body.HoldMillis, MaxHold.Milliseconds())) * time.Millisecond
	if err := h.api.ReserveStock(r.Context(), r.PathValue("id"), body.Lines, hold); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *handler) release(w http.ResponseWriter, r *http.Request) error {
	if err := h.api.ReleaseStock(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *handler) commit(w http.ResponseWriter, r *http.Request) error {
	if err := h.api.CommitStock(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *handler) stockLevels(w http.ResponseWriter, r *http.Request) error {
	levels, err := h.api.StockLevels(r.Context())
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, StockLevelList{Items: levels})
	return nil
}
