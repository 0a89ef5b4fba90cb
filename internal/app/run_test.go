package app_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/globomantics/globomantics/internal/app"
)

func TestSubcommands(t *testing.T) {
	noenv := func(string) string { return "" }
	for _, tc := range []struct {
		args    []string
		wantErr string
		stdout  string
		stderr  string
	}{
		{args: []string{"globomantics", "version"}, stdout: "globomantics "},
		{args: []string{"globomantics", "help"}, stdout: "globomantics [serve] [flags]"},
		{args: []string{"globomantics", "--help"}, stderr: "-http-addr"},
		{args: []string{"globomantics", "serve", "-h"}, stderr: "GLOBO_DATA_DIR"},
		{args: []string{"globomantics", "frobnicate"}, wantErr: `unknown command "frobnicate"`, stderr: "Usage:"},
		{args: []string{"globomantics", "serve", "--services", "checkout"}, wantErr: "service checkout needs cart"},
		{args: []string{"globomantics", "serve", "--http-addr", "nowhere"}, wantErr: "http address"},
	} {
		t.Run(strings.Join(tc.args[1:], " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := app.Run(context.Background(), tc.args, noenv, &out, &errOut)
			if tc.wantErr == "" && err != nil {
				t.Fatalf("Run: %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Run error = %v, want %q", err, tc.wantErr)
			}
			if !strings.Contains(out.String(), tc.stdout) {
				t.Errorf("stdout = %q, want %q in it", out.String(), tc.stdout)
			}
			if !strings.Contains(errOut.String(), tc.stderr) {
				t.Errorf("stderr = %q, want %q in it", errOut.String(), tc.stderr)
			}
		})
	}
}
