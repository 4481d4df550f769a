package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
)

// rawQuery runs a read query on the driver connection directly and calls
// row for each result row. It skips database/sql's per-column Scan
// conversions (which format and re-parse every integer scanned into an
// int), the dominant cost when loading 100k records. vals is reused
// between calls.
func (s *Store) rawQuery(ctx context.Context, query string, args []any, row func(vals []driver.Value) error) error {
	conn, err := s.rdb.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	named := make([]driver.NamedValue, len(args))
	for i, a := range args {
		v, err := driver.DefaultParameterConverter.ConvertValue(a)
		if err != nil {
			return fmt.Errorf("argument %d: %w", i+1, err)
		}
		named[i] = driver.NamedValue{Ordinal: i + 1, Value: v}
	}
	return queryRaw(ctx, conn, query, named, row)
}

// queryRaw runs query with named on conn's driver connection, calling row
// for each result row with vals reused between calls.
func queryRaw(ctx context.Context, conn *sql.Conn, query string, named []driver.NamedValue, row func(vals []driver.Value) error) error {
	return conn.Raw(func(dc any) error {
		qc, ok := dc.(driver.QueryerContext)
		if !ok {
			return errors.New("sqlite driver cannot query directly")
		}
		rows, err := qc.QueryContext(ctx, query, named)
		if err != nil {
			return err
		}
		defer rows.Close()
		vals := make([]driver.Value, len(rows.Columns()))
		for {
			if err := rows.Next(vals); err == io.EOF {
				return nil
			} else if err != nil {
				return err
			}
			if err := row(vals); err != nil {
				return err
			}
		}
	})
}

func vStr(v driver.Value) string {
	switch t := v.(type) {
	case string:
		return t
	case []byte:
		return string(t)
	}
	return ""
}

func vInt(v driver.Value) int64 {
	switch t := v.(type) {
	case int64:
		return t
	case float64:
		return int64(t)
	case bool:
		if t {
			return 1
		}
	}
	return 0
}

func vFloat(v driver.Value) float64 {
	switch t := v.(type) {
	case float64:
		return t
	case int64:
		return float64(t)
	}
	return 0
}
