package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// applyEnv applies environment overrides. Unset variables change nothing.
func applyEnv(cfg *Config, getenv func(string) string) error {
	var errs []error
	set := func(name string, apply func(string) error) {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			if err := apply(v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", name, v, err))
			}
		}
	}
	set("PORT", func(v string) error {
		if _, err := strconv.ParseUint(v, 10, 16); err != nil {
			return errors.New("not a port number")
		}
		cfg.Listen = ":" + v
		return nil
	})
	set("LISTEN_ADDR", func(v string) error { cfg.Listen = v; return nil })
	set("DEFAULT_TENANT", func(v string) error { cfg.DefaultTenant = v; return nil })
	set("ANALYZERS", func(v string) error {
		as, err := ParseAnalyzers(v)
		cfg.Analyzers = as
		return err
	})
	set("KAFKA_BROKERS", func(v string) error { cfg.Kafka.Brokers = splitList(v); return nil })
	set("KAFKA_TOPIC_PREFIX", func(v string) error { cfg.Kafka.TopicPrefix = v; return nil })
	set("KAFKA_ACKS", func(v string) error { cfg.Kafka.Acks = v; return nil })
	set("ROUTING_STRATEGY", func(v string) error { cfg.Routing.Strategy = v; return nil })
	set("HEALTH_CHECK_INTERVAL_SEC", seconds(&cfg.Health.Interval))
	set("HEALTH_CHECK_TIMEOUT_SEC", seconds(&cfg.Health.Timeout))
	set("MAX_FAILURES", integer(&cfg.Health.MaxFailures))
	set("RATE_LIMIT_RPS", float(&cfg.Limits.Global.Rate))
	set("RATE_LIMIT_BURST", integer(&cfg.Limits.Global.Burst))
	set("TENANT_RATE_LIMIT_RPS", float(&cfg.Limits.PerTenant.Rate))
	set("TENANT_RATE_LIMIT_BURST", integer(&cfg.Limits.PerTenant.Burst))
	return errors.Join(errs...)
}

func seconds(d *time.Duration) func(string) error {
	return func(v string) error {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return errors.New("not a number of seconds")
		}
		*d = time.Duration(f * float64(time.Second))
		return nil
	}
}

func integer(n *int) func(string) error {
	return func(v string) error {
		i, err := strconv.Atoi(v)
		if err != nil {
			return errors.New("not an integer")
		}
		*n = i
		return nil
	}
}

func float(f *float64) func(string) error {
	return func(v string) error {
		x, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return errors.New("not a number")
		}
		*f = x
		return nil
	}
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// ParseAnalyzers parses the log-streamer ANALYZERS form: comma-separated
// [id@]url=weight entries. Without id@, the id is the URL's host name
// (http://analyzer-1:9001=0.5 gives analyzer-1); for an IP address or
// localhost it is host-port (http://127.0.0.1:9001 gives 127.0.0.1-9001).
func ParseAnalyzers(v string) ([]Analyzer, error) {
	var out []Analyzer
	var errs []error
	for _, entry := range splitList(v) {
		a, err := parseAnalyzer(entry)
		if err != nil {
			errs = append(errs, fmt.Errorf("entry %q: %w", entry, err))
			continue
		}
		out = append(out, a)
	}
	return out, errors.Join(errs...)
}

func parseAnalyzer(entry string) (Analyzer, error) {
	var a Analyzer
	eq := strings.LastIndexByte(entry, '=')
	if eq < 0 {
		return a, errors.New("want [id@]url=weight")
	}
	w, err := strconv.ParseFloat(entry[eq+1:], 64)
	if err != nil {
		return a, errors.New("weight is not a number")
	}
	a.Weight, a.URL = w, entry[:eq]
	if at := strings.IndexByte(a.URL, '@'); at >= 0 && !strings.Contains(a.URL[:at], "://") {
		a.ID, a.URL = a.URL[:at], a.URL[at+1:]
	}
	u, err := url.Parse(a.URL)
	if err != nil || u.Host == "" {
		return a, errors.New("url must be absolute, like http://analyzer-1:9001")
	}
	if a.ID == "" {
		a.ID = u.Hostname()
		if ip := net.ParseIP(a.ID); ip != nil || a.ID == "localhost" {
			// An address alone would not tell analyzers on one host apart,
			// and ':' cannot stand in a topic name.
			a.ID = strings.ReplaceAll(u.Host, ":", "-")
		}
	}
	return a, nil
}
