// Package httpguard refuses the requests a web page in the user's browser
// could make a local service act on, and checks an optional bearer token.
//
// Both services of the lab listen on 127.0.0.1, and any page the user
// visits can send requests there: a form or a text/plain fetch needs no
// CORS preflight, and a DNS-rebinding page (evil.example resolving to
// 127.0.0.1) is even same-origin with the service. Each guard closes one
// door and answers with a JSON {"error": ...} that says how to get in:
//
//   - Hosts (421): the Host header must be a name the service is known by
//     (loopback names, an IP literal, its compose service name, the
//     ALLOWED_HOSTS list). A rebinding page's requests carry its own name.
//   - SameOrigin (403): a POST, PUT, PATCH or DELETE that a browser marks as
//     coming from another site (Sec-Fetch-Site) or another origin (Origin)
//     is refused. These are the rules of Go's http.CrossOriginProtection,
//     plus one: an Origin that differs from the Host is refused even when
//     Sec-Fetch-Site says same-origin.
//   - JSONOnly (415): every POST, PUT, PATCH and DELETE, with a body or
//     without, must say Content-Type: application/json (or another type
//     the route names). The three types a page may send cross-site without
//     a preflight (text/plain, forms, multipart) are never among them, so
//     even a browser that sends neither Origin nor Sec-Fetch-Site cannot
//     forge a request that passes.
//   - Bearer (401): when a token is configured, the request must carry
//     Authorization: Bearer <token> (compared in constant time).
//
// Safe methods (GET, HEAD, OPTIONS) pass SameOrigin and JSONOnly: they
// change nothing, and a page cannot read their answers without CORS, which
// neither service grants. Reads that disclose configuration are protected by
// Hosts (against rebinding) and, when set, by the token.
package httpguard
