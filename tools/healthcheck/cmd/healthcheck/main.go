// Command healthcheck is the Docker HEALTHCHECK of DSP Lab's FROM-scratch
// images, which have no shell or curl: it GETs a URL and exits 0 on a 2xx,
// 1 otherwise. A tcp://host:port target only checks that the port accepts
// a connection (the Kafka-protocol broker of the e2e stack has no HTTP).
//
//	HEALTHCHECK CMD ["/healthcheck", "http://127.0.0.1:8080/health"]
//	HEALTHCHECK CMD ["/healthcheck", "tcp://127.0.0.1:9092"]
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

const timeout = 3 * time.Second

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: healthcheck URL|tcp://HOST:PORT")
		os.Exit(2)
	}
	if err := check(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func check(target string) error {
	if addr, ok := strings.CutPrefix(target, "tcp://"); ok {
		c, err := net.DialTimeout("tcp", addr, timeout)
		if err != nil {
			return err
		}
		return c.Close()
	}
	c := &http.Client{Timeout: timeout}
	resp, err := c.Get(target)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: %s", target, resp.Status)
	}
	return nil
}
