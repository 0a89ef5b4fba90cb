// Command baseline is the yardstick for the shop's read path: a raw net/http
// server answering GET /api/v1/products/{id} with a fixed product JSON of the
// same shape and size, doing no I/O. The bench script measures the shop
// against it in the same run.
package main

import (
	"encoding/json"
	"flag"
	"log"
	"net/http"
	"os"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	body := flag.String("body", "", "file with the JSON body to serve")
	flag.Parse()
	b, err := os.ReadFile(*body)
	if err != nil || !json.Valid(b) {
		log.Fatalf("baseline: need a JSON body file: %v", err)
	}
	http.HandleFunc("GET /api/v1/products/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	})
	log.Fatal(http.ListenAndServe(*addr, nil))
}
