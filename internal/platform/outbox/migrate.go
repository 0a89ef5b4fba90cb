package outbox

import (
	"context"
	"io/fs"
	"strings"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
)

// SharedMigrations returns a store's migrations (fsys) with its copy of
// MigrationV2, the file named v2File, replaced by what db needs so that
// every store with an outbox can migrate one shared database (catalog and
// order on one PostgreSQL, or one SQLite file), in either order. Each store
// records its own versions (goose_<component>), so each applies its copy;
// ALTER TABLE ... ADD COLUMN of a column that another store's copy added
// fails, and the renumbering of seq must run once. The copy on disk stays
// byte-for-byte MigrationV2 (the stores' tests check it); the statements
// are derived from it here:
//
//   - on PostgreSQL the columns are added IF NOT EXISTS and seq is
//     renumbered only while the index outbox_by_seq (created last) does not
//     exist: safe however the stores race, since migrations run under one
//     advisory lock;
//   - SQLite has no ADD COLUMN IF NOT EXISTS: the outbox's columns are
//     read (pragma table_info) before migrating, and if seq is already
//     there only the idempotent statements (CREATE ... IF NOT EXISTS) run.
//     Two processes migrating one fresh SQLite file at the same instant may
//     still both see no seq: the second fails its start and succeeds on the
//     next (SQLite files are not shared between processes in the shop's
//     layouts).
//
// Applied before on a database, v2File keeps its version: goose never runs
// it again, whatever its text.
func SharedMigrations(ctx context.Context, db *sqldb.DB, fsys fs.FS, v2File string) (fs.FS, error) {
	const op = "outbox.SharedMigrations"
	var text string
	switch db.Dialect {
	case sqldb.Postgres:
		text = migrationV2Postgres()
	default:
		has, err := hasColumn(ctx, db, "outbox", "seq")
		if err != nil {
			return nil, errs.E(op, err)
		}
		text = MigrationV2
		if has {
			text = migrationV2Applied()
		}
	}
	return overlayFS{FS: fsys, name: v2File, data: text}, nil
}

// migrationV2Postgres is MigrationV2 made idempotent with PostgreSQL's
// IF NOT EXISTS and a guard on the renumbering.
func migrationV2Postgres() string {
	s := strings.ReplaceAll(MigrationV2, "ALTER TABLE outbox ADD COLUMN ", "ALTER TABLE outbox ADD COLUMN IF NOT EXISTS ")
	return strings.Replace(s, "\tWHERE outbox.seq_id = r.seq_id;",
		"\tWHERE outbox.seq_id = r.seq_id\n\tAND to_regclass('outbox_by_seq') IS NULL;", 1)
}

// migrationV2Applied is what is left of MigrationV2 where its columns exist:
// every statement but the ALTER TABLEs and the renumbering, all of them
// idempotent (IF NOT EXISTS).
func migrationV2Applied() string {
	var b strings.Builder
	for _, stmt := range strings.SplitAfter(MigrationV2, ";\n") {
		body := strings.TrimSpace(stripComments(stmt))
		if strings.HasPrefix(body, "ALTER TABLE outbox ADD COLUMN") || strings.HasPrefix(body, "UPDATE outbox SET seq") {
			b.WriteString(commentsOf(stmt)) // "-- +goose Up" is among them
			continue
		}
		b.WriteString(stmt)
	}
	return b.String()
}

// commentsOf keeps the lines of s that are SQL comments.
func commentsOf(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "--") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// stripComments drops the lines of s that are SQL comments.
func stripComments(s string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "--") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// hasColumn reports whether SQLite table has column col (false if there is
// no such table).
func hasColumn(ctx context.Context, db *sqldb.DB, table, col string) (bool, error) {
	var n int
	err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM pragma_table_info(?) WHERE name = ?`, table, col).Scan(&n)
	return n > 0, err
}

// overlayFS is FS with the file name's content replaced by data.
type overlayFS struct {
	fs.FS
	name, data string
}

func (o overlayFS) Open(name string) (fs.File, error) {
	if name != o.name {
		return o.FS.Open(name)
	}
	f, err := o.FS.Open(name) // the file must exist: the overlay replaces, never adds
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	f.Close()
	if err != nil {
		return nil, err
	}
	return &memFile{Reader: strings.NewReader(o.data), info: memInfo{FileInfo: fi, size: int64(len(o.data))}}, nil
}

// ReadDir lists the directory of the underlying FS (the overlay adds no
// name) so that goose's glob sees the same files.
func (o overlayFS) ReadDir(name string) ([]fs.DirEntry, error) { return fs.ReadDir(o.FS, name) }

type memFile struct {
	*strings.Reader
	info memInfo
}

func (f *memFile) Stat() (fs.FileInfo, error) { return f.info, nil }
func (f *memFile) Close() error               { return nil }

type memInfo struct {
	fs.FileInfo
	size int64
}

func (i memInfo) Size() int64 { return i.size }
