package app

import (
	"context"

	"github.com/globomantics/globomantics/internal/account/accountdb"
	"github.com/globomantics/globomantics/internal/cart/cartdb"
	"github.com/globomantics/globomantics/internal/checkout/checkoutdb"
	"github.com/globomantics/globomantics/internal/config"
	"github.com/globomantics/globomantics/internal/order/orderdb"
	"github.com/globomantics/globomantics/internal/payment/paymentdb"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
	"github.com/globomantics/globomantics/internal/reshard"
)

// shardSchemas gives `globomantics shards move` each sharded service's
// migrations, run on a destination node before shards are copied to it.
func shardSchemas() map[string]reshard.Schema {
	return map[string]reshard.Schema{
		config.Order: func(ctx context.Context, db *sqldb.DB) error {
			_, err := orderdb.OpenSharded(ctx, sqldb.Single(db))
			return err
		},
		config.Payment: func(ctx context.Context, db *sqldb.DB) error {
			_, err := paymentdb.OpenSharded(ctx, sqldb.Single(db))
			return err
		},
		config.Checkout: func(ctx context.Context, db *sqldb.DB) error {
			_, err := checkoutdb.OpenSharded(ctx, sqldb.Single(db))
			return err
		},
		config.Cart: func(ctx context.Context, db *sqldb.DB) error {
			_, err := cartdb.OpenSharded(ctx, sqldb.Single(db))
			return err
		},
		config.Account: func(ctx context.Context, db *sqldb.DB) error {
			_, err := accountdb.OpenSharded(ctx, sqldb.Single(db))
			return err
		},
	}
}
