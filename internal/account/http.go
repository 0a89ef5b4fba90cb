package account

import (
	"net/http"

	"github.com/globomantics/globomantics/internal/platform/httpx"
)

// The account service's REST API. Tokens travel in JSON bodies, never in
// URLs, so they stay out of access logs.
//
//	POST /svc/account/v1/accounts                    Registration -> 201 Account
//	GET  /svc/account/v1/accounts/{id}                             -> 200 Account
//	PUT  /svc/account/v1/accounts/{id}/profile       {"name"}      -> 200 Account
//	POST /svc/account/v1/sessions                    {"email","password"} -> 201 Session
//	POST /svc/account/v1/sessions/authenticate       {"token"}     -> 200 Account
//	POST /svc/account/v1/sessions/logout             {"token"}     -> 204
//	PUT  /svc/account/v1/accounts/{id}/password      {"keep_token","current_password","new_password"} -> 204
//	POST /svc/account/v1/password-resets             {"email"}     -> 202
//	POST /svc/account/v1/password-resets/check       {"token"}     -> 204
//	POST /svc/account/v1/password-resets/confirm     {"token","new_password"} -> 200 Account
//
// authenticate and logout are safe to repeat; the client marks them with an
// Idempotency-Key so that they are retried on another instance.
const apiPrefix = "/svc/account/v1"

type loginRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

type tokenRequest struct {
	Token string `json:"token"`
}

type profileRequest struct {
	Name string `json:"name"`
}

type passwordChangeRequest struct {
	KeepToken       string `json:"keep_token"`
	CurrentPassword string `json:"current_password"`
	NewPassword     string `json:"new_password"`
}

type resetRequest struct {
	Email string `json:"email"`
}

type resetConfirmRequest struct {
	Token       string `json:"token"`
	NewPassword string `json:"new_password"`
}

// NewHandler serves api's REST API under /svc/account/v1/.
func NewHandler(api API) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST "+apiPrefix+"/accounts", httpx.Handler(func(w http.ResponseWriter, r *http.Request) error {
		var in Registration
		if err := httpx.Decode(r, &in); err != nil {
			return err
		}
		a, err := api.Register(r.Context(), in)
		if err != nil {
			return err
		}
		httpx.WriteJSON(w, http.StatusCreated, a)
		return nil
	}))
	mux.Handle("GET "+apiPrefix+"/accounts/{id}", httpx.Handler(func(w http.ResponseWriter, r *http.Request) error {
		a, err := api.GetAccount(r.Context(), r.PathValue("id"))
		if err != nil {
			return err
		}
		httpx.WriteJSON(w, http.StatusOK, a)
		return nil
	}))
	mux.Handle("PUT "+apiPrefix+"/accounts/{id}/profile", httpx.Handler(func(w http.ResponseWriter, r *http.Request) error {
		var in profileRequest
		if err := httpx.Decode(r, &in); err != nil {
			return err
		}
		a, err := api.UpdateProfile(r.Context(), r.PathValue("id"), in.Name)
		if err != nil {
			return err
		}
		httpx.WriteJSON(w, http.StatusOK, a)
		return nil
	}))
	mux.Handle("POST "+apiPrefix+"/sessions", httpx.Handler(func(w http.ResponseWriter, r *http.Request) error {
		var in loginRequest
		if err := httpx.Decode(r, &in); err != nil {
			return err
		}
		s, err := api.Login(r.Context(), in.Email, in.Password)
		if err != nil {
			return err
		}
		w.Header().Set("Cache-Control", "no-store")
		httpx.WriteJSON(w, http.StatusCreated, s)
		return nil
	}))
	mux.Handle("POST "+apiPrefix+"/sessions/authenticate", httpx.Handler(func(w http.ResponseWriter, r *http.Request) error {
		var in tokenRequest
		if err := httpx.Decode(r, &in); err != nil {
			return err
		}
		a, err := api.Authenticate(r.Context(), in.Token)
		if err != nil {
			return err
		}
		httpx.WriteJSON(w, http.StatusOK, a)
		return nil
	}))
	mux.Handle("POST "+apiPrefix+"/sessions/logout", httpx.Handler(func(w http.ResponseWriter, r *http.Request) error {
		var in tokenRequest
		if err := httpx.Decode(r, &in); err != nil {
			return err
		}
		if err := api.Logout(r.Context(), in.Token); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}))
	mux.Handle("PUT "+apiPrefix+"/accounts/{id}/password", httpx.Handler(func(w http.ResponseWriter, r *http.Request) error {
		var in passwordChangeRequest
		if err := httpx.Decode(r, &in); err != nil {
			return err
		}
		if err := api.ChangePassword(r.Context(), r.PathValue("id"), in.KeepToken, in.CurrentPassword, in.NewPassword); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}))
	mux.Handle("POST "+apiPrefix+"/password-resets", httpx.Handler(func(w http.ResponseWriter, r *http.Request) error {
		var in resetRequest
		if err := httpx.Decode(r, &in); err != nil {
			return err
		}
		if err := api.RequestPasswordReset(r.Context(), in.Email); err != nil {
			return err
		}
		w.WriteHeader(http.StatusAccepted)
		return nil
	}))
	mux.Handle("POST "+apiPrefix+"/password-resets/check", httpx.Handler(func(w http.ResponseWriter, r *http.Request) error {
		var in tokenRequest
		if err := httpx.Decode(r, &in); err != nil {
			return err
		}
		if err := api.CheckPasswordReset(r.Context(), in.Token); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}))
	mux.Handle("POST "+apiPrefix+"/password-resets/confirm", httpx.Handler(func(w http.ResponseWriter, r *http.Request) error {
		var in resetConfirmRequest
		if err := httpx.Decode(r, &in); err != nil {
			return err
		}
		a, err := api.ResetPassword(r.Context(), in.Token, in.NewPassword)
		if err != nil {
			return err
		}
		httpx.WriteJSON(w, http.StatusOK, a)
		return nil
	}))
	return mux
}
