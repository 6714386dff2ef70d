// Command healthcheck is the Docker HEALTHCHECK of DSP Lab's FROM-scratch
// images, which have no shell or curl: it GETs a URL and exits 0 on a 2xx,
// 1 otherwise.
//
//	HEALTHCHECK CMD ["/healthcheck", "http://127.0.0.1:8080/health"]
package main

import (
	"fmt"
	"net/http"
	"os"
	"time"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: healthcheck URL")
		os.Exit(2)
	}
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		fmt.Fprintln(os.Stderr, resp.Status)
		os.Exit(1)
	}
}
