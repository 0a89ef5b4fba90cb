// Command globomantics runs the Globomantics shop: every service in one
// process by default, or any subset of them with --services.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/globomantics/globomantics/internal/app"
)

func main() {
	if err := app.Run(context.Background(), os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "globomantics:", err)
		os.Exit(1)
	}
}
