// Command hello is kiln's sample Go app: an HTTP server on $PORT that
// answers every request with its instance index and the services bound to
// it, read from the environment a DEA gives it.
package main

import (
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
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

// services returns the names of the services in VCAP_SERVICES, sorted.
func services() []string {
	var vs map[string][]struct {
		Name string `json:"name"`
	}
	_ = json.Unmarshal([]byte(os.Getenv("VCAP_SERVICES")), &vs)
	names := []string{}
	for _, list := range vs {
		for _, s := range list {
			names = append(names, s.Name)
		}
	}
	sort.Strings(names)
	return names
}

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		names := services()
		fmt.Fprintf(w, "Hello from go! instance %d, %d service(s): %s\n",
			instanceIndex(), len(names), strings.Join(names, ","))
	})
	log.Printf("listening on :%s", port)
	log.Fatal(http.ListenAndServe(":"+port, nil))
}
