package cart

import (
	"net/http"

	"github.com/globomantics/globomantics/internal/platform/httpx"
)

// The cart service's REST API. Owners and product ids are path segments,
// percent-encoded.
//
//	GET    /svc/cart/v1/carts/{owner}                                   -> 200 Cart
//	DELETE /svc/cart/v1/carts/{owner}                                   -> 204
//	POST   /svc/cart/v1/carts/{owner}/items          {"product_id","quantity"} -> 200 Cart (notices when capped), 409 sold out
//	PUT    /svc/cart/v1/carts/{owner}/items/{product} {"quantity"}     -> 200 Cart (notices when capped), 409 sold out
//	DELETE /svc/cart/v1/carts/{owner}/items/{product}                  -> 200 Cart
//	POST   /svc/cart/v1/carts/{owner}/merge          {"from"}          -> 200 Cart
//	POST   /svc/cart/v1/carts/{owner}/lock           {"lock_id"}       -> 200 Cart (the snapshot)
//	POST   /svc/cart/v1/carts/{owner}/unlock         {"lock_id"}       -> 204
//	POST   /svc/cart/v1/carts/{owner}/complete       {"lock_id"}       -> 200 Cart (what is left)
//
// merge is safe to repeat (the second time from is empty), and lock, unlock
// and complete are idempotent by lock id: the client marks them Retryable so
// that they are retried on another instance. Adding items is not, and is
// never retried.
const apiPrefix = "/svc/cart/v1/carts"

type addRequest struct {
	ProductID string `json:"product_id"`
	Quantity  int    `json:"quantity"`
}

type quantityRequest struct {
	Quantity int `json:"quantity"`
}

type mergeRequest struct {
	From string `json:"from"`
}

type lockRequest struct {
	LockID string `json:"lock_id"`
}

// NewHandler serves api's REST API under /svc/cart/v1/.
func NewHandler(api API) http.Handler {
	mux := http.NewServeMux()
	writeCart := func(w http.ResponseWriter, c Cart, err error) error {
		if err != nil {
			return err
		}
		httpx.WriteJSON(w, http.StatusOK, c)
		return nil
	}
	mux.Handle("GET "+apiPrefix+"/{owner}", httpx.Handler(func(w http.ResponseWriter, r *http.Request) error {
		c, err := api.GetCart(r.Context(), r.PathValue("owner"))
		return writeCart(w, c, err)
	}))
	mux.Handle("DELETE "+apiPrefix+"/{owner}", httpx.Handler(func(w http.ResponseWriter, r *http.Request) error {
		if err := api.Clear(r.Context(), r.PathValue("owner")); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}))
	mux.Handle("POST "+apiPrefix+"/{owner}/items", httpx.Handler(func(w http.ResponseWriter, r *http.Request) error {
		var in addRequest
		if err := httpx.Decode(r, &in); err != nil {
			return err
		}
		c, err := api.AddItem(r.Context(), r.PathValue("owner"), in.ProductID, in.Quantity)
		return writeCart(w, c, err)
	}))
	mux.Handle("PUT "+apiPrefix+"/{owner}/items/{product}", httpx.Handler(func(w http.ResponseWriter, r *http.Request) error {
		var in quantityRequest
		if err := httpx.Decode(r, &in); err != nil {
			return err
		}
		c, err := api.SetQuantity(r.Context(), r.PathValue("owner"), r.PathValue("product"), in.Quantity)
		return writeCart(w, c, err)
	}))
	mux.Handle("DELETE "+apiPrefix+"/{owner}/items/{product}", httpx.Handler(func(w http.ResponseWriter, r *http.Request) error {
		c, err := api.RemoveItem(r.Context(), r.PathValue("owner"), r.PathValue("product"))
		return writeCart(w, c, err)
	}))
	mux.Handle("POST "+apiPrefix+"/{owner}/merge", httpx.Handler(func(w http.ResponseWriter, r *http.Request) error {
		var in mergeRequest
		if err := httpx.Decode(r, &in); err != nil {
			return err
		}
		c, err := api.Merge(r.Context(), in.From, r.PathValue("owner"))
		return writeCart(w, c, err)
	}))
	mux.Handle("POST "+apiPrefix+"/{owner}/lock", httpx.Handler(func(w http.ResponseWriter, r *http.Request) error {
		var in lockRequest
		if err := httpx.Decode(r, &in); err != nil {
			return err
		}
		c, err := api.Lock(r.Context(), r.PathValue("owner"), in.LockID)
		return writeCart(w, c, err)
	}))
	mux.Handle("POST "+apiPrefix+"/{owner}/unlock", httpx.Handler(func(w http.ResponseWriter, r *http.Request) error {
		var in lockRequest
		if err := httpx.Decode(r, &in); err != nil {
			return err
		}
		if err := api.Unlock(r.Context(), r.PathValue("owner"), in.LockID); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}))
	mux.Handle("POST "+apiPrefix+"/{owner}/complete", httpx.Handler(func(w http.ResponseWriter, r *http.Request) error {
		var in lockRequest
		if err := httpx.Decode(r, &in); err != nil {
			return err
		}
		c, err := api.CompleteCheckout(r.Context(), r.PathValue("owner"), in.LockID)
		return writeCart(w, c, err)
	}))
	return mux
}
