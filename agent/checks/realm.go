package checks

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// A registry names the token service of its Bearer challenge itself
// (WWW-Authenticate: Bearer realm="..."), and the check sends its
// credentials there. A registry, or anyone on the path of a plain-http one,
// could name a server of its own and collect them. So a realm must be one
// the operator expects: realmPolicy says which.

// realmPolicy decides which token realms a registry-pull check may use.
type realmPolicy struct {
	registry *url.URL     // the registry's base URL
	listed   []realmEntry // token_realms
}

// realmEntry is one entry of token_realms.
type realmEntry struct {
	origin string // scheme://host:port, lower-case, port explicit
	path   string // "" matches any path of the origin
}

// parseRealmEntry parses a token_realms entry: an http(s) URL without
// credentials, query or fragment; "/" or no path means the whole origin.
func parseRealmEntry(s string) (realmEntry, error) {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return realmEntry{}, fmt.Errorf("%q is not a URL (%v); write it like https://harbor.example.com/service/token", s, err)
	case u.Scheme != "http" && u.Scheme != "https":
		return realmEntry{}, fmt.Errorf("%q is not an http:// or https:// URL; write it like https://harbor.example.com/service/token", s)
	case u.Host == "":
		return realmEntry{}, fmt.Errorf("%q has no host; write it like https://harbor.example.com/service/token", s)
	case u.User != nil:
		return realmEntry{}, fmt.Errorf("%q has credentials in it; remove them (the check's credentials_file is used)", s)
	case u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return realmEntry{}, fmt.Errorf("%q has a query or fragment; give the realm's URL without them", s)
	}
	e := realmEntry{origin: origin(u)}
	if u.Path != "/" {
		e.path = u.Path
	}
	return e, nil
}

// origin renders u's scheme, host and port, the port made explicit, so that
// https://h and https://h:443 compare equal.
func origin(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	return u.Scheme + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

// errRealmRefused is wrapped by the error of a realm the policy refuses.
var errRealmRefused = errors.New("token realm not allowed")

// check returns nil when the check may fetch a token from realm: an https
// URL on the registry's host (any port), a URL of the registry's own
// origin, or a URL token_realms lists. Otherwise nothing may be sent there.
func (p *realmPolicy) check(realm *url.URL) error {
	host := strings.ToLower(realm.Hostname())
	if realm.Scheme == "https" && host == strings.ToLower(p.registry.Hostname()) {
		return nil
	}
	o := origin(realm)
	if o == origin(p.registry) {
		return nil
	}
	for _, e := range p.listed {
		if e.origin == o && (e.path == "" || e.path == realm.Path) {
			return nil
		}
	}
	where := realm.Scheme + "://" + realm.Host + realm.Path
	return fmt.Errorf("auth: %w: the registry sends the pull to %s, which is neither https on the registry's host (%s) nor on the registry's own address; nothing was sent to it, credentials included. If that is the registry's token service, list it under token_realms",
		errRealmRefused, where, p.registry.Hostname())
}
