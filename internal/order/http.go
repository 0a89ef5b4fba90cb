package order

import (
	"net/http"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
	"github.com/globomantics/globomantics/internal/platform/page"
)

// Prefix is the path under which the order service's REST API is served.
const Prefix = "/svc/order/v1/"

// confirmBody is the body of POST orders/{id}/confirm.
type confirmBody struct {
	Payment  PaymentInfo  `json:"payment"`
	Shipment ShipmentInfo `json:"shipment"`
}

// cancelBody is the body of POST orders/{id}/cancel.
type cancelBody struct {
	Reason  string      `json:"reason"`
	Payment PaymentInfo `json:"payment"`
}

// NewHandler serves api's REST API under /svc/order/v1/:
//
//	PUT  orders/{id}          create (idempotent), body NewOrder
//	GET  orders/{id}          {id}: an order id or an order number
//	GET  orders?user_id=&page_size=&page_token=
//	PUT  orders/{id}/payment  body PaymentInfo
//	POST orders/{id}/confirm  body {payment, shipment}; idempotent
//	POST orders/{id}/cancel   body {reason, payment}; idempotent
//	GET  admin/orders?from=&to=&page_size=&page_token=
//	                          operators' list of every user's orders in a
//	                          time range (RFC 3339), when api is also an
//	                          Admin; names the shards that did not answer
func NewHandler(api API) http.Handler {
	h := handler{api: api}
	mux := http.NewServeMux()
	mux.Handle("PUT "+Prefix+"orders/{id}", httpx.Handler(h.create))
	mux.Handle("GET "+Prefix+"orders/{id}", httpx.Handler(h.get))
	mux.Handle("GET "+Prefix+"orders", httpx.Handler(h.list))
	mux.Handle("PUT "+Prefix+"orders/{id}/payment", httpx.Handler(h.setPayment))
	mux.Handle("POST "+Prefix+"orders/{id}/confirm", httpx.Handler(h.confirm))
	mux.Handle("POST "+Prefix+"orders/{id}/cancel", httpx.Handler(h.cancel))
	if a, ok := api.(Admin); ok {
		mux.Handle("GET "+adminOrdersPath, adminListHandler(a))
	}
	mux.HandleFunc(Prefix, httpx.NotFound)
	return mux
}

type handler struct{ api API }

func (h handler) create(w http.ResponseWriter, r *http.Request) error {
	var n NewOrder
	if err := httpx.Decode(r, &n); err != nil {
		return err
	}
	id := r.PathValue("id")
	if n.ID == "" {
		n.ID = id
	} else if n.ID != id {
		return errs.E("order.http.create", errs.BadRequest, errs.Msg("id in the body does not match the URL"))
	}
	o, err := h.api.CreateOrder(r.Context(), n)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, o)
	return nil
}

func (h handler) get(w http.ResponseWriter, r *http.Request) error {
	o, err := h.api.GetOrder(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, o)
	return nil
}

func (h handler) list(w http.ResponseWriter, r *http.Request) error {
	q, err := httpx.Query(r)
	if err != nil {
		return err
	}
	p, err := page.Parse(q.Get("page_size"), q.Get("page_token"))
	if err != nil {
		return err
	}
	pg, err := h.api.ListOrders(r.Context(), q.Get("user_id"), p)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, pg)
	return nil
}

func (h handler) setPayment(w http.ResponseWriter, r *http.Request) error {
	var p PaymentInfo
	if err := httpx.Decode(r, &p); err != nil {
		return err
	}
	o, err := h.api.SetPayment(r.Context(), r.PathValue("id"), p)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, o)
	return nil
}

func (h handler) confirm(w http.ResponseWriter, r *http.Request) error {
	var b confirmBody
	if err := httpx.Decode(r, &b); err != nil {
		return err
	}
	o, err := h.api.Confirm(r.Context(), r.PathValue("id"), b.Payment, b.Shipment)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, o)
	return nil
}

func (h handler) cancel(w http.ResponseWriter, r *http.Request) error {
	var b cancelBody
	if err := httpx.Decode(r, &b); err != nil {
		return err
	}
	o, err := h.api.Cancel(r.Context(), r.PathValue("id"), b.Reason, b.Payment)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, o)
	return nil
}
