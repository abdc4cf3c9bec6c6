// Command kiln-static serves a directory over HTTP on $PORT. The static
// buildpack of package staging builds it from this source (embedded in the
// stager) and copies the binary into every static site's droplet, so a
// static droplet needs no web server from its stack.
//
// It serves files below -root (default "."), answers "/" and directories
// with their index.html, never lists directories, and hides dot files and
// the Staticfile, Procfile and .kiln marker files from clients.
package main

import (
	"context"
	"errors"
	"flag"
	"log"
	"net/http"
	"os"
	"os/signal"
	"path"
	"strings"
	"syscall"
	"time"
)

func main() {
	root := flag.String("root", ".", "directory to serve")
	flag.Parse()
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	srv := &http.Server{
		Addr:              ":" + port,
		Handler:           handler(http.Dir(*root)),
		ReadHeaderTimeout: 10 * time.Second,
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Printf("kiln-static: serving %s on :%s", *root, port)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}

// hidden reports names clients must not see.
func hidden(name string) bool {
	for _, el := range strings.Split(name, "/") {
		if strings.HasPrefix(el, ".") || el == "Staticfile" || el == "Procfile" {
			return true
		}
	}
	return false
}

func handler(root http.FileSystem) http.Handler {
	files := http.FileServer(root)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := path.Clean("/" + r.URL.Path)
		if hidden(strings.TrimPrefix(name, "/")) {
			http.NotFound(w, r)
			return
		}
		f, err := root.Open(name)
		if err != nil {
			http.NotFound(w, r)
			return
		}
		fi, err := f.Stat()
		f.Close()
		if err != nil {
			http.NotFound(w, r)
			return
		}
		if fi.IsDir() {
			idx, err := root.Open(path.Join(name, "index.html"))
			if err != nil {
				http.NotFound(w, r) // no listings
				return
			}
			idx.Close()
		}
		files.ServeHTTP(w, r)
	})
}
