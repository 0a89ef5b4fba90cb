package app

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"

	"github.com/globomantics/globomantics/internal/platform/svcauth"
)

const credentialsUsage = `Usage:
  globomantics credentials init --dir D

Makes (or completes) a directory of service credentials: a secret per
service and for the operator (<name>.secret, mode 0600) and the verifiers
file of their hashes. Give every process "--credentials D" with the
verifiers file and the secrets of the services it runs only; a process
then presents its own service's credential to the others, and each
service accepts only the services that call it (and the operator).
Existing secrets are kept: running it again changes nobody's credential.

Flags:
`

// credentialsMain runs "globomantics credentials init".
func credentialsMain(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "init" {
		fmt.Fprint(stderr, credentialsUsage)
		if len(args) > 0 && (args[0] == "help" || args[0] == "-h" || args[0] == "--help") {
			return nil
		}
		return errors.New("credentials: want the command init")
	}
	fs := flag.NewFlagSet("credentials init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, credentialsUsage); fs.PrintDefaults() }
	dir := fs.String("dir", "", "`directory` to write the credentials to (made mode 0700)")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *dir == "" || fs.NArg() > 0 {
		fs.Usage()
		return errors.New("credentials init: --dir is required, and nothing else")
	}
	names := []string{svcauth.Operator}
	for _, c := range components() {
		names = append(names, c.name)
	}
	if err := svcauth.InitDir(*dir, names); err != nil {
		return fmt.Errorf("credentials init: %w", err)
	}
	fmt.Fprintf(stdout, "service credentials in %s (%s and %d secrets)\n", *dir, filepath.Join(*dir, svcauth.VerifiersFile), len(names))
	return nil
}
