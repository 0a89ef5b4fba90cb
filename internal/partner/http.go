package partner

import (
	"io"
	"net/http"
	"strconv"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
)

// Prefix is where the partner service's internal API is mounted.
const Prefix = "/svc/partner/v1/"

// Bodies of the internal API.
type (
	createRequest struct {
		Name       string `json:"name"`
		WebhookURL string `json:"webhook_url"`
	}
	authRequest struct {
		Key string `json:"key"`
	}
	webhookRequest struct {
		URL string `json:"url"`
	}
	imageRequest struct {
		Image []byte `json:"image"` // base64 in JSON
	}
	listResponse[T any] struct {
		Items []T `json:"items"`
	}
)

// NewHandler serves api on the internal listener (callers are checked by
// svcauth before this):
//
//	POST /svc/partner/v1/partners                        createRequest → Created
//	GET  /svc/partner/v1/partners                        → {items: [Partner]}
//	POST /svc/partner/v1/authenticate                    {key} → Partner
//	POST /svc/partner/v1/partners/{pid}/products         NewProduct → Product
//	PUT  /svc/partner/v1/partners/{pid}/products/{id}/image   {image: base64} → Product
//	GET  /svc/partner/v1/partners/{pid}/products         → {items: [Product]}
//	GET  /svc/partner/v1/partners/{pid}/sales?limit=N    → SalesReport
//	GET  /svc/partner/v1/partners/{pid}/webhook          → Webhook
//	PUT  /svc/partner/v1/partners/{pid}/webhook          {url} → Webhook (with its new secret)
//	GET  /svc/partner/v1/partners/{pid}/deliveries?limit=N → {items: [Delivery]}
//	GET  /svc/partner/v1/deliveries/{id}/dispatch        → Dispatch
//	POST /svc/partner/v1/deliveries/{id}/attempts        Attempt → Delivery
func NewHandler(api API) http.Handler {
	mux := http.NewServeMux()
	h := func(pattern string, fn func(w http.ResponseWriter, r *http.Request) error) {
		mux.Handle(pattern, httpx.Handler(fn))
	}
	h("POST "+Prefix+"partners", func(w http.ResponseWriter, r *http.Request) error {
		var in createRequest
		if err := httpx.Decode(r, &in); err != nil {
			return err
		}
		c, err := api.Create(r.Context(), in.Name, in.WebhookURL)
		if err != nil {
			return err
		}
		httpx.WriteJSON(w, http.StatusCreated, c)
		return nil
	})
	h("GET "+Prefix+"partners", func(w http.ResponseWriter, r *http.Request) error {
		ps, err := api.List(r.Context())
		if err != nil {
			return err
		}
		httpx.WriteJSON(w, http.StatusOK, listResponse[Partner]{Items: nonNil(ps)})
		return nil
	})
	h("POST "+Prefix+"authenticate", func(w http.ResponseWriter, r *http.Request) error {
		var in authRequest
		if err := httpx.Decode(r, &in); err != nil {
			return err
		}
		p, err := api.Authenticate(r.Context(), in.Key)
		if err != nil {
			return err
		}
		httpx.WriteJSON(w, http.StatusOK, p)
		return nil
	})
	h("POST "+Prefix+"partners/{pid}/products", func(w http.ResponseWriter, r *http.Request) error {
		var in NewProduct
		if err := httpx.Decode(r, &in); err != nil {
			return err
		}
		p, err := api.CreateProduct(r.Context(), r.PathValue("pid"), in)
		if err != nil {
			return err
		}
		httpx.WriteJSON(w, http.StatusCreated, p)
		return nil
	})
	h("PUT "+Prefix+"partners/{pid}/products/{id}/image", func(w http.ResponseWriter, r *http.Request) error {
		var in imageRequest
		if err := httpx.DecodeLimit(r, &in, MaxImageBytes/3*4+4096); err != nil {
			return err
		}
		p, err := api.SetImage(r.Context(), r.PathValue("pid"), r.PathValue("id"), in.Image)
		if err != nil {
			return err
		}
		httpx.WriteJSON(w, http.StatusOK, p)
		return nil
	})
	h("GET "+Prefix+"partners/{pid}/products", func(w http.ResponseWriter, r *http.Request) error {
		ps, err := api.Products(r.Context(), r.PathValue("pid"))
		if err != nil {
			return err
		}
		httpx.WriteJSON(w, http.StatusOK, listResponse[Product]{Items: nonNil(ps)})
		return nil
	})
	h("GET "+Prefix+"partners/{pid}/sales", func(w http.ResponseWriter, r *http.Request) error {
		limit, err := LimitParam(r)
		if err != nil {
			return err
		}
		rep, err := api.Sales(r.Context(), r.PathValue("pid"), limit)
		if err != nil {
			return err
		}
		httpx.WriteJSON(w, http.StatusOK, rep)
		return nil
	})
	h("GET "+Prefix+"partners/{pid}/webhook", func(w http.ResponseWriter, r *http.Request) error {
		wh, err := api.Webhook(r.Context(), r.PathValue("pid"))
		if err != nil {
			return err
		}
		httpx.WriteJSON(w, http.StatusOK, wh)
		return nil
	})
	h("PUT "+Prefix+"partners/{pid}/webhook", func(w http.ResponseWriter, r *http.Request) error {
		var in webhookRequest
		if err := httpx.Decode(r, &in); err != nil {
			return err
		}
		wh, err := api.SetWebhook(r.Context(), r.PathValue("pid"), in.URL)
		if err != nil {
			return err
		}
		httpx.WriteJSON(w, http.StatusOK, wh)
		return nil
	})
	h("GET "+Prefix+"partners/{pid}/deliveries", func(w http.ResponseWriter, r *http.Request) error {
		limit, err := LimitParam(r)
		if err != nil {
			return err
		}
		ds, err := api.Deliveries(r.Context(), r.PathValue("pid"), limit)
		if err != nil {
			return err
		}
		httpx.WriteJSON(w, http.StatusOK, listResponse[Delivery]{Items: nonNil(ds)})
		return nil
	})
	h("GET "+Prefix+"deliveries/{id}/dispatch", func(w http.ResponseWriter, r *http.Request) error {
		d, err := api.Dispatch(r.Context(), r.PathValue("id"))
		if err != nil {
			return err
		}
		httpx.WriteJSON(w, http.StatusOK, d)
		return nil
	})
	h("POST "+Prefix+"deliveries/{id}/attempts", func(w http.ResponseWriter, r *http.Request) error {
		var in Attempt
		if err := httpx.Decode(r, &in); err != nil {
			return err
		}
		d, err := api.RecordAttempt(r.Context(), r.PathValue("id"), in)
		if err != nil {
			return err
		}
		httpx.WriteJSON(w, http.StatusOK, d)
		return nil
	})
	mux.HandleFunc("/", httpx.NotFound)
	return mux
}

// ReadImage reads an image upload's raw body: its Content-Type must be
// image/* and it must be at most MaxImageBytes. errs.BadRequest,
// errs.TooLarge (413) or errs.Invalid (an empty body) otherwise.
func ReadImage(r *http.Request) ([]byte, error) {
	const op = "partner.ReadImage"
	ct := r.Header.Get("Content-Type")
	if len(ct) < 6 || ct[:6] != "image/" {
		return nil, errs.E(op, errs.BadRequest, errs.Msg("the body must be the image itself, with a Content-Type of image/png or image/jpeg"))
	}
	if r.ContentLength > MaxImageBytes {
		return nil, errs.E(op, errs.TooLarge, errs.Msg("image must be at most %d MB", MaxImageBytes>>20))
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, MaxImageBytes+1))
	if err != nil {
		return nil, errs.E(op, errs.BadRequest, errs.Msg("could not read the image"), err)
	}
	if len(b) > MaxImageBytes {
		return nil, errs.E(op, errs.TooLarge, errs.Msg("image must be at most %d MB", MaxImageBytes>>20))
	}
	if len(b) == 0 {
		return nil, errs.E(op, errs.Invalid, errs.Msg("image must not be empty"))
	}
	return b, nil
}

// LimitParam reads the optional ?limit= of a list (0 when absent).
// errs.BadRequest when it is not a whole number.
func LimitParam(r *http.Request) (int, error) {
	v, err := httpx.Query(r)
	if err != nil {
		return 0, err
	}
	s := v.Get("limit")
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, errs.E("partner.limit", errs.BadRequest, errs.Msg("limit must be a whole number"))
	}
	return n, nil
}
