package sqldb

// OperationOf exposes operationOf (the db_operation label of SQL text).
var OperationOf = operationOf
