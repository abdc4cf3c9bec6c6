// Command gopg is kiln's sample Go app with a PostgreSQL service: an HTTP
// server on $PORT that finds the database credentials a DEA gives it in
// VCAP_SERVICES (the first bound service whose credentials have a "uri")
// and, on GET /rows, inserts a row into a table (created if missing) and
// answers the table's row count as JSON. When the database refuses, for
// example because the binding was revoked, /rows answers 500 with the
// error's text and SQLSTATE. GET / answers with the instance index and the
// service found, without touching the database, so it serves as the health
// check.
//
// Every request opens its own connection, so each one authenticates with
// the credentials from VCAP_SERVICES: revoked credentials fail on the next
// request rather than hiding behind a pooled session.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"
	"sort"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// instanceIndex reads the instance index from VCAP_APPLICATION, falling
// back to INSTANCE_INDEX, else -1.
func instanceIndex() int {
	var app struct {
		InstanceIndex *int `json:"instance_index"`
	}
	if json.Unmarshal([]byte(os.Getenv("VCAP_APPLICATION")), &app) == nil && app.InstanceIndex != nil {
		return *app.InstanceIndex
	}
	if i, err := strconv.Atoi(os.Getenv("INSTANCE_INDEX")); err == nil {
		return i
	}
	return -1
}

// database is the bound service the app uses.
type database struct {
	Name string // the service instance's name
	URI  string // its credentials' connection URI
}

// findDatabase returns the first service in VCAP_SERVICES (labels in
// sorted order, then the order listed) whose credentials have a uri.
func findDatabase(vcapServices string) (database, error) {
	var vs map[string][]struct {
		Name        string `json:"name"`
		Credentials struct {
			URI string `json:"uri"`
		} `json:"credentials"`
	}
	if vcapServices == "" {
		return database{}, errors.New("VCAP_SERVICES is not set: no service is bound")
	}
	if err := json.Unmarshal([]byte(vcapServices), &vs); err != nil {
		return database{}, fmt.Errorf("VCAP_SERVICES: %w", err)
	}
	labels := make([]string, 0, len(vs))
	for l := range vs {
		labels = append(labels, l)
	}
	sort.Strings(labels)
	for _, l := range labels {
		for _, s := range vs[l] {
			if s.Credentials.URI != "" {
				return database{Name: s.Name, URI: s.Credentials.URI}, nil
			}
		}
	}
	return database{}, errors.New("no service in VCAP_SERVICES has credentials with a uri")
}

// schema creates the table /rows writes to.
const schema = `CREATE TABLE IF NOT EXISTS gopg_rows (
	id       bigserial PRIMARY KEY,
	instance integer NOT NULL,
	created  timestamptz NOT NULL DEFAULT now()
)`

// addRow connects with uri, inserts a row for instance and returns how
// many rows the table holds.
func addRow(ctx context.Context, uri string, instance int) (int64, error) {
	conn, err := pgx.Connect(ctx, uri)
	if err != nil {
		return 0, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, schema); err != nil {
		return 0, fmt.Errorf("create table: %w", err)
	}
	var n int64
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "INSERT INTO gopg_rows (instance) VALUES ($1)", instance); err != nil {
			return fmt.Errorf("insert: %w", err)
		}
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM gopg_rows").Scan(&n); err != nil {
			return fmt.Errorf("count: %w", err)
		}
		return nil
	})
	return n, err
}

// rowsAnswer is the JSON answer of GET /rows.
type rowsAnswer struct {
	Instance int    `json:"instance"`
	Service  string `json:"service,omitempty"`
	Count    int64  `json:"count,omitempty"`
	Error    string `json:"error,omitempty"`
	SQLState string `json:"sqlstate,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	index := instanceIndex()
	db, dbErr := findDatabase(os.Getenv("VCAP_SERVICES"))
	if dbErr != nil {
		log.Printf("no database: %v", dbErr)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		svc := "none"
		if dbErr == nil {
			svc = db.Name
		}
		fmt.Fprintf(w, "Hello from gopg! instance %d, database service: %s\n", index, svc)
	})
	mux.HandleFunc("GET /rows", func(w http.ResponseWriter, r *http.Request) {
		ans := rowsAnswer{Instance: index, Service: db.Name}
		if dbErr != nil {
			ans.Error = dbErr.Error()
			writeJSON(w, http.StatusInternalServerError, ans)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		n, err := addRow(ctx, db.URI, index)
		if err != nil {
			ans.Error = err.Error()
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) {
				ans.SQLState = pgErr.Code
			}
			log.Printf("GET /rows: %v", err)
			writeJSON(w, http.StatusInternalServerError, ans)
			return
		}
		ans.Count = n
		writeJSON(w, http.StatusOK, ans)
	})
	srv := &http.Server{Addr: ":" + port, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Printf("instance %d listening on :%s", index, port)
	log.Fatal(srv.ListenAndServe())
}
