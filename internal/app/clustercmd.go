package app

import (
	"context"
	"io"

	"github.com/globomantics/globomantics/internal/cluster"
)

// clusterMain runs "globomantics cluster up|status|down|run" with the
// shop's service graph taken from the registry.
func clusterMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var comps []cluster.Component
	for _, c := range components() {
		comps = append(comps, cluster.Component{Name: c.name, Needs: c.needs, Uses: c.uses, HasAPI: c.remote != nil})
	}
	return cluster.Main(ctx, args, cluster.Options{Components: comps}, stdout, stderr)
}
