package app

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/globomantics/globomantics/internal/platform/ids"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
)

// The data directory remembers the shop it belongs to and the services
// whose databases it has seen carry that shop's identity.
const (
	shopIDFile       = "shop.id"       // the shop's id, one line
	shopServicesFile = "shop.services" // one service name a line
)

// serviceDB is a local service's database as found at start: one
// database, or the nodes of a sharded one.
type serviceDB struct {
	db *sqldb.DB
	// shards, when the service is sharded (config.Shards), holds its
	// nodes; db is then nil.
	shards *sqldb.Sharded
	// created: the database carried no shop identity when this process
	// started (it is new, or from before identities), and this process
	// gave it one. For a sharded service: every node did.
	created bool
	// key is the service name its identity row is kept under.
	key string
}

// sharded is the service's database as a sharded one: its nodes, or its
// one database as a single node holding every shard.
func (s *serviceDB) sharded() *sqldb.Sharded {
	if s.shards != nil {
		return s.shards
	}
	return sqldb.Single(s.db)
}

// openDatabases opens the database of every local component that has one
// (every node of a sharded one), refuses a damaged one, and matches each to
// this data directory's shop:
//
//   - a database carrying another shop's id is refused;
//   - a database carrying none, of a service whose database this data
//     directory has seen before, was lost: it is refused rather than
//     silently started empty (or re-seeded);
//   - a data directory without a shop id adopts the id its databases carry
//     (a new process joining shared databases), or makes a new one when
//     they are all new.
//
// Every database is then claimed for the shop and the data directory's
// record is written. Databases are registered for closing as they open.
// The nodes of a sharded service are named <service>@<hash of the node> in
// the record.
func (a *app) openDatabases(ctx context.Context, local []component) (map[string]*serviceDB, error) {
	out := map[string]*serviceDB{}
	units := map[string]*serviceDB{} // one per database: a service's, or a shard node's
	carried := map[string]string{}
	var names []string // databases, in build order
	// check opens the database of name (a service, or service@node for a
	// shard node), whose identity row is kept under key (the service).
	check := func(name, key, dsn string, db *sqldb.DB) error {
		a.dbs[name] = db
		a.dsns[name] = dsn
		if err := sqldb.CheckIntegrity(ctx, db); err != nil {
			return fmt.Errorf("%s database %s is damaged, refusing to start: %w; restore it from a backup", name, redactDSN(dsn), err)
		}
		id, err := sqldb.Identity(ctx, db, key)
		if err != nil {
			return fmt.Errorf("%s database %s: %w", name, redactDSN(dsn), err)
		}
		units[name] = &serviceDB{db: db, created: id == "", key: key}
		carried[name] = id
		names = append(names, name)
		return nil
	}
	for _, c := range local {
		if !c.db {
			continue
		}
		if spec := a.cfg.Shards[c.name]; spec != "" {
			sh, err := sqldb.OpenSharded(ctx, spec, sqldb.Options{Log: a.log.With("db", c.name),
				DBName: c.name, Registerer: a.obsRegisterer(), TracerProvider: a.obsTracerProvider()})
			if err != nil {
				return nil, fmt.Errorf("%s shard nodes (GLOBO_SHARDS_%s): %w", c.name, strings.ToUpper(c.name), err)
			}
			a.onClose(sh.Close)
			// The map stored in the nodes wins over the configured one once
			// shards have moved (globomantics shards move); the process
			// follows it while it runs, and stops before the nodes close.
			follow, stop := context.WithCancel(context.WithoutCancel(ctx))
			a.onClose(func() error { stop(); return nil })
			if err := sh.Follow(follow, time.Second); err != nil {
				a.log.Warn("shard map: the stored map could not be read; using the configured one", "service", c.name, "err", err)
			}
			m, nodes := sh.Snapshot()
			var nodeNames []string
			for _, node := range m.Nodes() {
				// Named by the node, not its place in the map, which
				// changes when shards move.
				sum := sha256.Sum256([]byte(node))
				name := fmt.Sprintf("%s@%x", c.name, sum[:4])
				if err := check(name, c.name, node, nodes[node]); err != nil {
					return nil, err
				}
				nodeNames = append(nodeNames, name)
			}
			out[c.name] = &serviceDB{shards: sh}
			// A node that is down fails only the users on it: the service
			// is ready while any of its nodes answers.
			a.checks["db:"+c.name] = anyShardNode(sh)
			defer func() { // once claimed: new when every node was
				created := true
				for _, n := range nodeNames {
					created = created && units[n].created
				}
				out[c.name].created = created
			}()
			continue
		}
		// The service's name is its database's name in consistency
		// tokens, unique across the shop.
		dsn := a.cfg.DatabaseFor(c.name)
		db, err := sqldb.OpenWith(ctx, dsn, sqldb.Options{Source: c.name, Log: a.log.With("db", c.name),
			Registerer: a.obsRegisterer(), TracerProvider: a.obsTracerProvider()})
		if err != nil {
			return nil, fmt.Errorf("%s database %s: %w", c.name, redactDSN(dsn), err)
		}
		a.onClose(db.Close)
		a.checks["db:"+c.name] = db.Ping
		if c.available {
			a.checks["db:"+c.name] = anyNode(db)
		}
		if err := check(c.name, c.name, dsn, db); err != nil {
			return nil, err
		}
		out[c.name] = units[c.name]
	}
	if len(names) == 0 {
		return out, nil
	}
	if err := a.claimDatabases(ctx, names, units, carried); err != nil {
		return nil, err
	}
	return out, nil
}

// claimDatabases applies the rules of openDatabases to the identities the
// databases of names carried at start.
func (a *app) claimDatabases(ctx context.Context, names []string, dbs map[string]*serviceDB, carried map[string]string) error {
	dir := a.cfg.DataDir
	dirID, seen, err := readShopRecord(dir)
	if err != nil {
		return err
	}
	var problems []string
	if dirID != "" {
		for _, n := range names {
			switch id := carried[n]; {
			case id != "" && id != dirID:
				problems = append(problems, fmt.Sprintf("%s database %s belongs to another shop (%s), not to the shop of data directory %s (%s): give this process that shop's data directory, or this shop's %s database",
					n, redactDSN(a.dsns[n]), id, dir, dirID, n))
			case id == "" && (seen == nil || seen[n]):
				problems = append(problems, fmt.Sprintf("%s database %s holds no data of this shop (%s): it is new or empty, so it was deleted, replaced or emptied since the shop last ran in data directory %s; restore it from a backup, or start a new shop with a fresh data directory",
					n, redactDSN(a.dsns[n]), dirID, dir))
			}
		}
	} else {
		var found []string
		for _, n := range names {
			if id := carried[n]; id != "" && !slices.Contains(found, id) {
				found = append(found, id)
			}
		}
		if len(found) > 1 {
			var parts []string
			for _, n := range names {
				if carried[n] != "" {
					parts = append(parts, fmt.Sprintf("%s database %s (%s)", n, redactDSN(a.dsns[n]), carried[n]))
				}
			}
			problems = append(problems, "the databases belong to different shops: "+strings.Join(parts, ", "))
		}
		if len(found) == 1 {
			dirID = found[0]
			a.log.Info("joining the shop its databases belong to", "shop", dirID, "data_dir", dir)
		}
	}
	if len(problems) > 0 {
		return errors.New("refusing to start: " + strings.Join(problems, "; "))
	}

	shopID, isNew := dirID, dirID == ""
	if isNew {
		shopID = ids.New("shop", a.clock.Now())
	}
	claimed := false
	for _, n := range names {
		if carried[n] != "" {
			continue
		}
		got, err := sqldb.Claim(ctx, dbs[n].db, dbs[n].key, shopID, a.clock.Now())
		if err != nil {
			return fmt.Errorf("%s database %s: %w", n, redactDSN(a.dsns[n]), err)
		}
		if got != shopID {
			if isNew && !claimed {
				// Another process starting on the same new databases
				// claimed the first one first: this is its shop.
				shopID, isNew = got, false
				dbs[n].created = false
				claimed = true
				continue
			}
			return fmt.Errorf("refusing to start: %s database %s was claimed by shop %s while this process started as shop %s; start it again", n, redactDSN(a.dsns[n]), got, shopID)
		}
		claimed = true
	}
	if isNew {
		a.log.Info("new shop", "shop", shopID, "data_dir", dir)
	}
	return writeShopRecord(dir, shopID, seen, names)
}

// readShopRecord reads the data directory's shop id ("" if it has none) and
// the services whose databases it has seen (nil: unknown, so all of them).
func readShopRecord(dir string) (string, map[string]bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, shopIDFile))
	if errors.Is(err, os.ErrNotExist) {
		return "", map[string]bool{}, nil
	}
	if err != nil {
		return "", nil, fmt.Errorf("shop id: %w", err)
	}
	id := strings.TrimSpace(string(b))
	if id == "" {
		return "", nil, fmt.Errorf("shop id: %s is empty: restore it, or remove it if this data directory's databases are all new", filepath.Join(dir, shopIDFile))
	}
	b, err = os.ReadFile(filepath.Join(dir, shopServicesFile))
	if errors.Is(err, os.ErrNotExist) {
		return id, nil, nil
	}
	if err != nil {
		return "", nil, fmt.Errorf("shop services: %w", err)
	}
	seen := map[string]bool{}
	for _, s := range strings.Fields(string(b)) {
		seen[s] = true
	}
	return id, seen, nil
}

// writeShopRecord records shopID and the services seen before and now, each
// file replaced whole.
func writeShopRecord(dir, shopID string, seen map[string]bool, now []string) error {
	var list []string
	for s := range seen {
		list = append(list, s)
	}
	for _, s := range now {
		if !slices.Contains(list, s) {
			list = append(list, s)
		}
	}
	slices.Sort(list)
	if err := writeFileAtomic(filepath.Join(dir, shopServicesFile), strings.Join(list, "\n")+"\n"); err != nil {
		return fmt.Errorf("shop services: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, shopIDFile), shopID+"\n"); err != nil {
		return fmt.Errorf("shop id: %w", err)
	}
	return nil
}

func writeFileAtomic(path, content string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

var dsnPassword = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)

// redactDSN is dsn fit for logs and errors: a PostgreSQL URL or key=value
// string without its password; a SQLite path as is.
func redactDSN(dsn string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "postgres://(unparsable DSN)"
		}
		if q := u.Query(); q.Has("password") {
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		return u.Redacted()
	}
	return dsnPassword.ReplaceAllString(dsn, "${1}xxxxx")
}
