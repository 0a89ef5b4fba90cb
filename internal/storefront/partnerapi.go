package storefront

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/globomantics/globomantics/internal/partner"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
	"github.com/globomantics/globomantics/internal/platform/ratelimit"
)

// Partners is what the storefront needs of the partner service to serve the
// partner API; partner.API (the in-process *Service and the HTTP *Client)
// satisfies it.
type Partners interface {
	Authenticate(ctx context.Context, key string) (partner.Partner, error)
	CreateProduct(ctx context.Context, partnerID string, p partner.NewProduct) (partner.Product, error)
	SetImage(ctx context.Context, partnerID, listingID string, image []byte) (partner.Product, error)
	Products(ctx context.Context, partnerID string) ([]partner.Product, error)
	Sales(ctx context.Context, partnerID string, limit int) (partner.SalesReport, error)
	Webhook(ctx context.Context, partnerID string) (partner.Webhook, error)
	SetWebhook(ctx context.Context, partnerID, url string) (partner.Webhook, error)
	Deliveries(ctx context.Context, partnerID string, limit int) ([]partner.Delivery, error)
}

var _ Partners = partner.API(nil)

// PartnerLimit bounds the requests of one partner (by its key, across the
// storefront instances when the limiter is shared): 600 a minute, 60 at
// once. A partner is a program, so its budget is larger than a shopper's.
var PartnerLimit = ratelimit.Limit{Events: 600, Period: time.Minute, Burst: 60}

// partnerRealm is the realm of the partner API's WWW-Authenticate challenge.
const partnerRealm = `Bearer realm="globomantics-partner"`

// partnerOps is the partner API's part of the API table (apiOps); it is
// served when the storefront has a partner service:
//
//	POST /api/v1/partner/products                 NewProduct → 201 Product (awaiting its image)
//	PUT  /api/v1/partner/products/{id}/image      raw image/png or image/jpeg body → Product (listed)
//	GET  /api/v1/partner/products                 → {items: [Product]} with live stock
//	GET  /api/v1/partner/sales?limit=N            → SalesReport
//	GET  /api/v1/partner/webhook                  → {url}
//	PUT  /api/v1/partner/webhook                  {url} → {url, secret} (the secret shown this once)
//	GET  /api/v1/partner/webhooks/deliveries?limit=N → {items: [Delivery]}
//
// Every request carries "Authorization: Bearer <key>"; without a valid key
// the answer is 401 problem+json with a WWW-Authenticate challenge. A
// partner sees and touches only its own products (another's is 404).
func (s *Server) partnerOps() []*apiOp {
	const (
		ok, created, notFound = http.StatusOK, http.StatusCreated, http.StatusNotFound
		invalid               = http.StatusUnprocessableEntity
	)
	p := s.d.Partners // nil when only documenting
	limit := "At most this many items, newest first (default and maximum: the service's)."
	return []*apiOp{partnerOp("POST /api/v1/partner/products", "createPartnerProduct", "List a new product (awaiting its image)", func(w http.ResponseWriter, r *http.Request, pt partner.Partner) error {
		var in partner.NewProduct
		if err := httpx.Decode(r, &in); err != nil {
			return err
		}
		out, err := p.CreateProduct(r.Context(), pt.ID, in)
		if err != nil {
			return err
		}
		w.Header().Set("Location", "/api/v1/partner/products/"+out.ID)
		httpx.WriteJSON(w, http.StatusCreated, out)
		return nil
	}).in(partner.NewProduct{}).out(created, partner.Product{}, "The listing, awaiting its image.").fails(invalid),
		partnerOp("PUT /api/v1/partner/products/{id}/image", "setPartnerProductImage", "Upload a listing's image (lists the product)", func(w http.ResponseWriter, r *http.Request, pt partner.Partner) error {
			img, err := partner.ReadImage(r)
			if err != nil {
				return err
			}
			out, err := p.SetImage(r.Context(), pt.ID, r.PathValue("id"), img)
			if err != nil {
				return err
			}
			httpx.WriteJSON(w, http.StatusOK, out)
			return nil
		}).inRaw("image/png", "image/jpeg").out(ok, partner.Product{}, "The listing, now listed.").fails(notFound, http.StatusConflict, invalid),
		partnerOp("GET /api/v1/partner/products", "listPartnerProducts", "The partner's listings, with live stock", func(w http.ResponseWriter, r *http.Request, pt partner.Partner) error {
			out, err := p.Products(r.Context(), pt.ID)
			if err != nil {
				return err
			}
			httpx.WriteJSON(w, http.StatusOK, List[partner.Product]{Items: nonNilSlice(out)})
			return nil
		}).out(ok, List[partner.Product]{}, "The listings."),
		partnerOp("GET /api/v1/partner/sales", "getPartnerSales", "The partner's sales report", func(w http.ResponseWriter, r *http.Request, pt partner.Partner) error {
			limit, err := partner.LimitParam(r)
			if err != nil {
				return err
			}
			out, err := p.Sales(r.Context(), pt.ID, limit)
			if err != nil {
				return err
			}
			out.Sales = nonNilSlice(out.Sales)
			httpx.WriteJSON(w, http.StatusOK, out)
			return nil
		}).query("limit", "integer", limit).out(ok, partner.SalesReport{}, "The sales report."),
		partnerOp("GET /api/v1/partner/webhook", "getPartnerWebhook", "The partner's webhook", func(w http.ResponseWriter, r *http.Request, pt partner.Partner) error {
			out, err := p.Webhook(r.Context(), pt.ID)
			if err != nil {
				return err
			}
			httpx.WriteJSON(w, http.StatusOK, out)
			return nil
		}).out(ok, partner.Webhook{}, "The webhook (its URL; the secret is shown only when set)."),
		partnerOp("PUT /api/v1/partner/webhook", "setPartnerWebhook", "Set the partner's webhook URL (a new secret)", func(w http.ResponseWriter, r *http.Request, pt partner.Partner) error {
			var in PartnerWebhookRequest
			if err := httpx.Decode(r, &in); err != nil {
				return err
			}
			out, err := p.SetWebhook(r.Context(), pt.ID, in.URL)
			if err != nil {
				return err
			}
			w.Header().Set("Cache-Control", "no-store") // it holds the secret
			httpx.WriteJSON(w, http.StatusOK, out)
			return nil
		}).in(PartnerWebhookRequest{}).out(ok, partner.Webhook{}, "The webhook with its signing secret, shown this once.").fails(invalid),
		partnerOp("GET /api/v1/partner/webhooks/deliveries", "listPartnerDeliveries", "The partner's recent webhook deliveries", func(w http.ResponseWriter, r *http.Request, pt partner.Partner) error {
			limit, err := partner.LimitParam(r)
			if err != nil {
				return err
			}
			out, err := p.Deliveries(r.Context(), pt.ID, limit)
			if err != nil {
				return err
			}
			httpx.WriteJSON(w, http.StatusOK, List[partner.Delivery]{Items: nonNilSlice(out)})
			return nil
		}).query("limit", "integer", limit).out(ok, List[partner.Delivery]{}, "The deliveries, newest first."),
	}
}

// PartnerWebhookRequest is the body of PUT /api/v1/partner/webhook.
type PartnerWebhookRequest struct {
	URL string `json:"url"`
}

// withPartner authenticates the request's bearer key and spends one event
// of the partner's PartnerLimit before h. A missing or unknown key is 401
// with a WWW-Authenticate challenge.
func (s *Server) withPartner(h func(w http.ResponseWriter, r *http.Request, pt partner.Partner) error) func(w http.ResponseWriter, r *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		const op = "storefront.partner"
		key, ok := bearer(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", partnerRealm)
			return errs.E(op, errs.Unauthorized, errs.Msg(`partner API requests need "Authorization: Bearer <key>"`))
		}
		pt, err := s.d.Partners.Authenticate(r.Context(), key)
		if errs.Is(errs.Unauthorized, err) {
			w.Header().Set("WWW-Authenticate", partnerRealm+`, error="invalid_token"`)
			return errs.E(op, errs.Unauthorized, errs.Msg("the partner API key is not valid"))
		}
		if err != nil {
			return err
		}
		if err := s.limit(r.Context(), PartnerLimit, "partner:"+pt.ID, "partner API requests"); err != nil {
			return err
		}
		return h(w, r, pt)
	}
}

// bearer returns the token of r's "Authorization: Bearer <token>" header.
func bearer(r *http.Request) (string, bool) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	tok = strings.TrimSpace(tok)
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return "", false
	}
	return tok, true
}

func nonNilSlice[T any](v []T) []T {
	if v == nil {
		return []T{}
	}
	return v
}
