package testenv_test

import "github.com/globomantics/globomantics/internal/platform/sqldb"

func sqldbIsUnique(err error) bool { return sqldb.IsUniqueViolation(err) }
