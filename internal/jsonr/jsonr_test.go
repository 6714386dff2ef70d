package jsonr

import (
	"encoding/json"
	"strings"
	"testing"
)

var validitySeeds = []string{`{"a":[1,-2.5e+3,"x\u00e9\n",true,false,null,{}]}`, `  "s"  `, `0`, `-0.0E-0`, `01`, `1.`, `.5`, `+1`, `-`,
	`"\x"`, `"\u12"`, "\"ctl\x01\"", `"bad \xff utf8"`, `{"a" 1}`, `{"a":1,}`, `[1,]`, `[`, `]`, `{}}`, `nul`, `truex`, ``, ` `,
	strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth), strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1)}

// Skip then AtEnd accepts exactly what encoding/json calls valid.
func FuzzSkipAcceptsWhatEncodingJSONAccepts(f *testing.F) {
	for _, s := range validitySeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s := New(b)
		_, err := s.Skip()
		got := err == nil && s.AtEnd()
		if want := json.Valid(b); got != want {
			t.Fatalf("scanner accepts %q: %v (err %v); encoding/json: %v", b, got, err, want)
		}
	})
}

// Str decodes a string exactly as encoding/json does.
func FuzzStrIsEncodingJSON(f *testing.F) {
	for _, s := range []string{`"plain"`, `"esc \" \\ \/ \b \f \n \r \t"`, `"\u00e9 \ud83d\ude00 \ud800 \udc00x"`, `"bad \xff \xc3"`, `"\u2028"`, ` null `, `1`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if strings.TrimSpace(string(b)) == "null" {
			return // encoding/json leaves a string alone for null; Str wants a string
		}
		var want string
		werr := json.Unmarshal(b, &want)
		s := New(b)
		got, err := s.Str()
		if err == nil && !s.AtEnd() {
			err = s.Errorf("trailing data")
		}
		if (err == nil) != (werr == nil) || got != want && err == nil {
			t.Fatalf("Str(%q) = %q, %v; encoding/json: %q, %v", b, got, err, want, werr)
		}
	})
}
