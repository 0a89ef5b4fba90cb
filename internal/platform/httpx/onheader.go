package httpx

import "net/http"

// OnHeader returns a ResponseWriter that calls fn with the response's
// headers once, just before the status line is sent (by WriteHeader or the
// first Write), so that a wrapper can add headers that depend on what the
// handler did.
func OnHeader(w http.ResponseWriter, fn func(http.Header)) http.ResponseWriter {
	return &onHeaderWriter{ResponseWriter: w, fn: fn}
}

type onHeaderWriter struct {
	http.ResponseWriter
	fn   func(http.Header)
	done bool
}

func (w *onHeaderWriter) WriteHeader(status int) {
	if !w.done {
		w.done = true
		w.fn(w.Header())
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *onHeaderWriter) Write(b []byte) (int, error) {
	if !w.done {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *onHeaderWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
