package config

// The run-time overlay (PUT /admin/config) is set by whoever reaches the
// admin API, so it may tune the distributor but not, by default, move its
// endpoints: brokers, topic prefix, SASL credentials and analyzer ids and
// URLs decide where accepted packets land and who is believed healthy. An
// overlay that points an analyzer at a foreign host, or the writer at a
// foreign broker or prefix, would have packets answered 2xx that no
// analyzer ever reads. The file (reload.allow_endpoint_changes) can allow
// it.
//
// The overlay is also shown back (GET /admin/config) and re-applied by the
// platform after an experiment, so its secrets are redacted on the way out
// and a redacted placeholder on the way in means "keep the value in force".

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"slices"

	"go.yaml.in/yaml/v3"
)

// Redaction replaces a secret wherever the configuration is shown. Sent
// back in an overlay, it means "the value in force".
const Redaction = "<redacted>"

// urlRedaction is what url.URL.Redacted puts in place of a password.
const urlRedaction = "xxxxx"

// RedactURL hides the password of a URL with user information.
func RedactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, ok := u.User.Password(); !ok {
		return s
	}
	return u.Redacted()
}

// endpoints are the fields an overlay may change only when the file allows
// it, as file and environment set them.
type endpoints struct {
	reload             Reload
	brokers            []string
	topicPrefix        string
	saslUser, saslPass string
	analyzers          map[string]string // id → URL
}

func endpointsOf(c Config) endpoints {
	e := endpoints{reload: c.Reload, brokers: slices.Clone(c.Kafka.Brokers), topicPrefix: c.Kafka.TopicPrefix,
		saslUser: c.Kafka.SASLUser, saslPass: c.Kafka.SASLPassword, analyzers: map[string]string{}}
	for _, a := range c.Analyzers {
		e.analyzers[a.ID] = a.URL
	}
	return e
}

// changes lists what the overlay applied to e changed and may not: the
// reload section always, the endpoints unless e allows it.
func (e endpoints) changes(c Config) []error {
	var errs []error
	if c.Reload != e.reload {
		errs = append(errs, errors.New("reload.allow_endpoint_changes: can be set only in the config file, not by the overlay"))
	}
	if e.reload.AllowEndpointChanges {
		return errs
	}
	refuse := func(field, what string) {
		errs = append(errs, fmt.Errorf("%s: the overlay may not %s unless the config file sets reload.allow_endpoint_changes: true", field, what))
	}
	if !slices.Equal(c.Kafka.Brokers, e.brokers) {
		refuse("kafka.brokers", fmt.Sprintf("change the brokers (%v in the file and environment)", e.brokers))
	}
	if c.Kafka.TopicPrefix != e.topicPrefix {
		refuse("kafka.topic_prefix", fmt.Sprintf("change the topic prefix (%q in the file and environment)", e.topicPrefix))
	}
	if c.Kafka.SASLUser != e.saslUser {
		refuse("kafka.sasl_user", "change the SASL user")
	}
	if c.Kafka.SASLPassword != e.saslPass {
		refuse("kafka.sasl_password", "change the SASL password")
	}
	for i, a := range c.Analyzers {
		u, ok := e.analyzers[a.ID]
		switch {
		case !ok:
			refuse(fmt.Sprintf("analyzers[%d].id", i), fmt.Sprintf("add analyzer %q (not in the file and environment; the overlay may drop analyzers and change weights)", a.ID))
		case u != a.URL:
			refuse(fmt.Sprintf("analyzers[%d].url", i), fmt.Sprintf("change the URL of %s (%s in the file and environment)", a.ID, RedactURL(u)))
		}
	}
	return errs
}

// RedactOverlay returns the overlay document with its secrets redacted:
// kafka.sasl_password becomes Redaction, an analyzer URL's password xxxxx.
// A document without secrets is returned as it is (its own formatting);
// one with secrets comes back as YAML. A document that does not parse is
// not an overlay in force and is returned as it is.
func RedactOverlay(overlay []byte) []byte {
	doc, err := parseOverlay(overlay)
	if err != nil || doc == nil {
		return overlay
	}
	changed := false
	walkSecrets(doc, func(n *yaml.Node, isURL bool) {
		v := Redaction
		if isURL {
			v = RedactURL(n.Value)
		}
		if v != n.Value {
			n.Value, n.Tag, n.Style, changed = v, "!!str", yaml.DoubleQuotedStyle, true
		}
	})
	if !changed {
		return overlay
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		return []byte("# the overlay holds secrets and could not be redacted\n")
	}
	return out
}

// ResolveRedacted replaces the redaction placeholders of an overlay (as
// RedactOverlay shows them) by the values in force in cur, so that an
// overlay read back and set again keeps its secrets. An overlay without
// placeholders is returned as it is.
func ResolveRedacted(overlay []byte, cur Config) ([]byte, error) {
	doc, err := parseOverlay(overlay)
	if err != nil || doc == nil {
		return overlay, nil // decodeStrict reports the parse error
	}
	changed := false
	var errs []error
	walkSecrets(doc, func(n *yaml.Node, isURL bool) {
		switch {
		case !isURL && n.Value == Redaction:
			n.Value, changed = cur.Kafka.SASLPassword, true
		case isURL && hasRedactedPassword(n.Value):
			for _, a := range cur.Analyzers {
				if RedactURL(a.URL) == n.Value {
					n.Value, changed = a.URL, true
					return
				}
			}
			errs = append(errs, fmt.Errorf("analyzers: url %s holds the redacted password %s, and no analyzer in force has that URL", n.Value, urlRedaction))
		}
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if !changed {
		return overlay, nil
	}
	return yaml.Marshal(doc)
}

func hasRedactedPassword(s string) bool {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return false
	}
	p, ok := u.User.Password()
	return ok && p == urlRedaction
}

func parseOverlay(b []byte) (*yaml.Node, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, nil
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	return &doc, nil
}

// walkSecrets calls fn on every secret scalar of an overlay document:
// kafka.sasl_password, and analyzers[*].url (isURL). Aliases are followed,
// so a secret given through an anchor is found too.
func walkSecrets(doc *yaml.Node, fn func(n *yaml.Node, isURL bool)) {
	root := doc
	if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		root = root.Content[0]
	}
	if kafka := mapValue(root, "kafka"); kafka != nil {
		if pw := mapValue(kafka, "sasl_password"); pw != nil && pw.Kind == yaml.ScalarNode {
			fn(pw, false)
		}
	}
	if as := mapValue(root, "analyzers"); as != nil && as.Kind == yaml.SequenceNode {
		for _, a := range as.Content {
			if u := mapValue(deref(a), "url"); u != nil && u.Kind == yaml.ScalarNode {
				fn(u, true)
			}
		}
	}
}

func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// mapValue is the value of key in mapping m (nil when absent).
func mapValue(m *yaml.Node, key string) *yaml.Node {
	m = deref(m)
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return deref(m.Content[i+1])
		}
	}
	return nil
}
