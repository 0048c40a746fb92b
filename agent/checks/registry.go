package checks

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/harbormaster/harbormaster/internal/conf"
)

// Manifest media types a pull accepts.
const (
	mediaOCIIndex       = "application/vnd.oci.image.index.v1+json"
	mediaOCIManifest    = "application/vnd.oci.image.manifest.v1+json"
	mediaDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
)

var manifestAccept = strings.Join([]string{mediaOCIIndex, mediaOCIManifest, mediaDockerList, mediaDockerManifest}, ", ")

const (
	// maxManifest is the largest manifest read (distribution's own limit).
	maxManifest = 4 << 20
	// maxIndexDepth bounds indexes pointing at indexes.
	maxIndexDepth = 2
	// maxSmallBody bounds error and token response bodies.
	maxSmallBody = 64 << 10
)

// registryProber is a registry-pull check.
type registryProber struct {
	base     string // scheme://host[:port]
	realms   realmPolicy
	image    imageRef
	platform platform
	credFile string
	caFile   string
	timeout  time.Duration
}

func newRegistryProber(c Config) (*registryProber, error) {
	img, err := parseImage(c.Image)
	if err != nil {
		return nil, &conf.FieldError{Field: "image", Msg: err.Error()}
	}
	pf, err := parsePlatform(c.Platform)
	if err != nil {
		return nil, &conf.FieldError{Field: "platform", Msg: err.Error()}
	}
	u, err := url.Parse(c.Registry)
	if err != nil {
		return nil, &conf.FieldError{Field: "registry", Msg: err.Error()}
	}
	realms := realmPolicy{registry: &url.URL{Scheme: u.Scheme, Host: u.Host}}
	for i, r := range c.TokenRealms {
		e, err := parseRealmEntry(r)
		if err != nil {
			return nil, &conf.FieldError{Field: fmt.Sprintf("token_realms[%d]", i), Msg: err.Error()}
		}
		realms.listed = append(realms.listed, e)
	}
	return &registryProber{
		base: u.Scheme + "://" + u.Host, realms: realms, image: img, platform: pf,
		credFile: c.CredentialsFile, caFile: c.CAFile, timeout: time.Duration(c.Timeout),
	}, nil
}

// probe pulls the image: the manifest by tag or digest, the platform's
// manifest when that is an index, then the config and every layer, each
// checked against its descriptor's digest and size.
func (p *registryProber) probe(ctx context.Context) (string, error) {
	start := time.Now()
	var creds *credentials
	if p.credFile != "" {
		var err error
		if creds, err = readCredentials(p.credFile); err != nil {
			return "", err
		}
	}
	tr, err := newTransport(p.caFile)
	if err != nil {
		return "", err
	}
	// Layers are gzip'd already; a transparently decompressed body would not
	// match its digest.
	tr.DisableCompression = true
	defer tr.CloseIdleConnections()
	c := &registryClient{
		hc:   &http.Client{Transport: tr}, // follows up to 10 redirects (blob storage)
		base: p.base, realms: &p.realms, repo: p.image.repo, creds: creds, timeout: p.timeout,
	}

	top, err := c.manifest(ctx, p.image.ref(), nil)
	if err != nil {
		return "", err
	}
	m, picked := top, ""
	for depth := 0; m.isIndex(); depth++ {
		if depth == maxIndexDepth {
			return "", fmt.Errorf("%s: indexes nested deeper than %d", m.label, maxIndexDepth)
		}
		d, err := pickPlatform(m.doc.Manifests, p.platform)
		if err != nil {
			return "", fmt.Errorf("%s: %w", m.label, err)
		}
		if m, err = c.manifest(ctx, d.Digest, &d); err != nil {
			return "", err
		}
		picked = fmt.Sprintf(" -> %s %s", d.platform(), d.Digest)
	}
	if m.doc.Config == nil {
		return "", fmt.Errorf("%s: image manifest without a config", m.label)
	}
	blobs := append([]descriptor{*m.doc.Config}, m.doc.Layers...)
	var total int64
	for _, b := range blobs {
		if err := c.blob(ctx, b); err != nil {
			return "", err
		}
		total += b.Size
	}
	what := p.image.String()
	if p.image.digest == "" {
		what += " " + top.digest
	}
	return fmt.Sprintf("pulled %s%s (%d blobs, %d bytes) in %s", what, picked, len(blobs), total, since(start)), nil
}

// descriptor points at a manifest or blob.
type descriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
	Platform  *struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
		Variant      string `json:"variant,omitempty"`
	} `json:"platform,omitempty"`
}

func (d descriptor) platform() platform {
	if d.Platform == nil {
		return platform{os: "unknown", arch: "unknown"}
	}
	return platform{os: d.Platform.OS, arch: d.Platform.Architecture, variant: d.Platform.Variant}
}

// manifestDoc holds the fields of an image manifest and of an index.
type manifestDoc struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        *descriptor  `json:"config"`
	Layers        []descriptor `json:"layers"`
	Manifests     []descriptor `json:"manifests"`
}

// fetchedManifest is a manifest fetched and verified.
type fetchedManifest struct {
	label     string // "manifest repo:tag" or "manifest repo@digest", for errors
	digest    string // sha256 of the body
	mediaType string
	doc       manifestDoc
}

func (m *fetchedManifest) isIndex() bool {
	return m.mediaType == mediaOCIIndex || m.mediaType == mediaDockerList
}

// pickPlatform returns the first entry of an index matching want.
func pickPlatform(ms []descriptor, want platform) (descriptor, error) {
	var have []string
	for _, d := range ms {
		p := d.platform()
		if d.Platform != nil && want.matches(p) {
			return d, nil
		}
		if !slices.Contains(have, p.String()) {
			have = append(have, p.String())
		}
	}
	return descriptor{}, fmt.Errorf("no manifest for platform %s in index (has %s)", want, strings.Join(have, ", "))
}

// registryClient makes the requests of one pull. It is not safe for
// concurrent use.
type registryClient struct {
	hc      *http.Client
	base    string
	realms  *realmPolicy // nil: any realm (tests of the parser only)
	repo    string
	creds   *credentials // nil: anonymous
	auth    string       // Authorization header once authenticated
	timeout time.Duration
}

// manifest fetches a manifest by tag or digest and verifies it: against
// the digest it was fetched by, the registry's Docker-Content-Digest for a
// tag, and the size in want (the index entry) when given.
func (c *registryClient) manifest(ctx context.Context, ref string, want *descriptor) (*fetchedManifest, error) {
	byDigest := strings.Contains(ref, ":") // a tag has no colon
	label := "manifest " + c.repo + ":" + ref
	if byDigest {
		label = "manifest " + c.repo + "@" + ref
		if !digestRE.MatchString(ref) {
			return nil, fmt.Errorf("%s: not a sha256 digest; only sha256 is supported", label)
		}
	}
	resp, err := c.get(ctx, c.base+"/v2/"+c.repo+"/manifests/"+ref, manifestAccept)
	if err != nil {
		return nil, stageErr(ctx, c.timeout, label, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, c.statusErr(label, resp)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxManifest+1))
	if err != nil {
		return nil, stageErr(ctx, c.timeout, label, err)
	}
	if len(body) > maxManifest {
		return nil, fmt.Errorf("%s: larger than %d bytes", label, maxManifest)
	}
	sum := sha256.Sum256(body)
	m := &fetchedManifest{label: label, digest: "sha256:" + hex.EncodeToString(sum[:])}
	if byDigest && m.digest != ref {
		return nil, fmt.Errorf("%s: digest mismatch (content hashes to %s)", label, m.digest)
	}
	if h := resp.Header.Get("Docker-Content-Digest"); !byDigest && strings.HasPrefix(h, "sha256:") && h != m.digest {
		return nil, fmt.Errorf("%s: digest mismatch (Docker-Content-Digest is %s, content hashes to %s)", label, h, m.digest)
	}
	if want != nil && int64(len(body)) != want.Size {
		return nil, fmt.Errorf("%s: %d bytes, the index says %d", label, len(body), want.Size)
	}
	if err := json.Unmarshal(body, &m.doc); err != nil {
		return nil, fmt.Errorf("%s: not a JSON manifest: %v", label, err)
	}
	m.mediaType = m.doc.MediaType
	if m.mediaType == "" {
		m.mediaType, _, _ = mime.ParseMediaType(resp.Header.Get("Content-Type"))
	}
	if m.mediaType == "" || m.mediaType == "application/json" || m.mediaType == "text/plain" {
		// An OCI manifest may leave mediaType out; tell the kinds apart by content.
		switch {
		case m.doc.Manifests != nil:
			m.mediaType = mediaOCIIndex
		case m.doc.Config != nil:
			m.mediaType = mediaOCIManifest
		}
	}
	switch {
	case strings.HasPrefix(m.mediaType, "application/vnd.docker.distribution.manifest.v1"):
		return nil, fmt.Errorf("%s: schema 1 manifests are not supported; push the image again with a current client", label)
	case m.doc.SchemaVersion != 2:
		return nil, fmt.Errorf("%s: schemaVersion %d, want 2", label, m.doc.SchemaVersion)
	case m.isIndex(), m.mediaType == mediaOCIManifest, m.mediaType == mediaDockerManifest:
	default:
		return nil, fmt.Errorf("%s: media type %q is not an image manifest or index", label, m.mediaType)
	}
	for _, d := range append(append([]descriptor(nil), m.doc.Manifests...), m.doc.Layers...) {
		if !digestRE.MatchString(d.Digest) {
			return nil, fmt.Errorf("%s: digest %q is not sha256:<64 hex digits>; only sha256 is supported", label, clipHead(d.Digest, 80))
		}
	}
	if m.doc.Config != nil && !digestRE.MatchString(m.doc.Config.Digest) {
		return nil, fmt.Errorf("%s: config digest %q is not sha256:<64 hex digits>; only sha256 is supported", label, clipHead(m.doc.Config.Digest, 80))
	}
	return m, nil
}

// blob streams a blob through sha256 and checks its size and digest. d's
// digest has been validated by manifest.
func (c *registryClient) blob(ctx context.Context, d descriptor) error {
	label := "blob " + d.Digest
	if d.Size < 0 {
		return fmt.Errorf("%s: negative size %d in the manifest", label, d.Size)
	}
	resp, err := c.get(ctx, c.base+"/v2/"+c.repo+"/blobs/"+d.Digest, "")
	if err != nil {
		return stageErr(ctx, c.timeout, label, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return c.statusErr(label, resp)
	}
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(resp.Body, d.Size+1))
	if err != nil {
		return stageErr(ctx, c.timeout, fmt.Sprintf("%s: after %d of %d bytes", label, n, d.Size), err)
	}
	switch {
	case n > d.Size:
		return fmt.Errorf("%s: longer than the %d bytes of its descriptor", label, d.Size)
	case n < d.Size:
		return fmt.Errorf("%s: %d bytes, want %d", label, n, d.Size)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != d.Digest {
		return fmt.Errorf("%s: digest mismatch (content hashes to %s)", label, got)
	}
	return nil
}

// get sends a GET, authenticating and retrying once when the registry
// answers 401 with a challenge. The caller closes the body.
func (c *registryClient) get(ctx context.Context, u, accept string) (*http.Response, error) {
	for retried := false; ; retried = true {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("User-Agent", userAgent)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		resp, err := c.hc.Do(req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusUnauthorized || retried {
			return resp, nil
		}
		challenges := resp.Header.Values("WWW-Authenticate")
		discard(resp)
		if err := c.authenticate(ctx, challenges); err != nil {
			return nil, err
		}
	}
}

// authenticate answers a 401's challenges: a Bearer challenge with a token
// from its realm (fetched with the credentials, or anonymously), a Basic
// one with the credentials.
func (c *registryClient) authenticate(ctx context.Context, headers []string) error {
	var basic, bearer *challenge
	for _, h := range headers {
		ch := parseChallenge(h)
		switch {
		case ch.scheme == "bearer" && bearer == nil:
			bearer = &ch
		case ch.scheme == "basic" && basic == nil:
			basic = &ch
		}
	}
	switch {
	case bearer != nil:
		tok, err := c.token(ctx, bearer.params)
		if err != nil {
			return err
		}
		c.auth = "Bearer " + tok
	case basic != nil:
		if c.creds == nil {
			return errors.New("auth: the registry asks for Basic credentials; set credentials_file")
		}
		c.auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(c.creds.user+":"+c.creds.pass))
	default:
		return errors.New("auth: 401 without a Bearer or Basic challenge")
	}
	return nil
}

// token fetches a pull token from a Bearer challenge's realm, when the
// check's realm policy allows that realm.
func (c *registryClient) token(ctx context.Context, params map[string]string) (string, error) {
	realm, err := url.Parse(params["realm"])
	if err != nil || (realm.Scheme != "http" && realm.Scheme != "https") || realm.Host == "" || realm.User != nil {
		return "", fmt.Errorf("auth: token realm %q is not an http(s) URL", clipHead(params["realm"], 120))
	}
	if c.realms == nil {
		return "", errors.New("auth: no token realm policy") // every prober sets one
	}
	if err := c.realms.check(realm); err != nil {
		return "", err
	}
	where := realm.Scheme + "://" + realm.Host + realm.Path
	q := realm.Query()
	if s := params["service"]; s != "" {
		q.Set("service", s)
	}
	scope := params["scope"]
	if scope == "" {
		scope = "repository:" + c.repo + ":pull"
	}
	for _, s := range strings.Fields(scope) {
		q.Add("scope", s)
	}
	realm.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, realm.String(), nil)
	if err != nil {
		return "", fmt.Errorf("auth: token realm %s: %w", where, err)
	}
	req.Header.Set("User-Agent", userAgent)
	if c.creds != nil {
		req.SetBasicAuth(c.creds.user, c.creds.pass)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return "", stageErr(ctx, c.timeout, "auth: token realm "+where, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		hint := ""
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			hint = "; the credentials were refused"
			if c.creds == nil {
				hint = "; anonymous access refused, set credentials_file"
			}
		}
		return "", fmt.Errorf("auth: %d from token realm %s%s", resp.StatusCode, where, hint)
	}
	var tr struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxSmallBody)).Decode(&tr); err != nil {
		return "", fmt.Errorf("auth: token realm %s: bad JSON: %v", where, err)
	}
	tok := tr.Token
	if tok == "" {
		tok = tr.AccessToken
	}
	if tok == "" {
		return "", fmt.Errorf("auth: token realm %s returned no token", where)
	}
	return tok, nil
}

// statusErr describes a registry's non-200 answer by its status and the
// first error code of the body: "404 MANIFEST_UNKNOWN (manifest unknown)".
func (c *registryClient) statusErr(label string, resp *http.Response) error {
	var body struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	_ = json.NewDecoder(io.LimitReader(resp.Body, maxSmallBody)).Decode(&body)
	msg := fmt.Sprintf("%d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	if len(body.Errors) > 0 && body.Errors[0].Code != "" {
		e := body.Errors[0]
		msg = fmt.Sprintf("%d %s", resp.StatusCode, clipHead(e.Code, 64))
		if e.Message != "" && !strings.EqualFold(strings.ReplaceAll(e.Code, "_", " "), e.Message) {
			msg += " (" + clipHead(oneLine(e.Message), 160) + ")"
		}
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized && c.auth != "":
		msg += " after authenticating; check credentials_file and the account's pull access"
	case resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusUnauthorized:
		msg += "; check the account's pull access"
	}
	return fmt.Errorf("%s: %s", label, msg)
}

// discard drains a little of a body (so the connection can be reused) and
// closes it.
func discard(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxSmallBody))
	resp.Body.Close()
}

// challenge is one WWW-Authenticate challenge.
type challenge struct {
	scheme string            // lower-case: bearer, basic
	params map[string]string // keys lower-case
}

// parseChallenge parses `Bearer realm="...",service="...",scope="..."`:
// one challenge per header, quoted or bare values.
func parseChallenge(h string) challenge {
	scheme, rest, _ := strings.Cut(strings.TrimSpace(h), " ")
	ch := challenge{scheme: strings.ToLower(scheme), params: map[string]string{}}
	for {
		rest = strings.TrimLeft(rest, " \t,")
		key, after, ok := strings.Cut(rest, "=")
		if !ok {
			return ch
		}
		key = strings.ToLower(strings.TrimSpace(key))
		after = strings.TrimLeft(after, " \t")
		var val strings.Builder
		if strings.HasPrefix(after, `"`) {
			i := 1
			for ; i < len(after) && after[i] != '"'; i++ {
				if after[i] == '\\' && i+1 < len(after) {
					i++
				}
				val.WriteByte(after[i])
			}
			rest = after[min(i+1, len(after)):]
		} else {
			end := strings.IndexByte(after, ',')
			if end < 0 {
				end = len(after)
			}
			val.WriteString(strings.TrimSpace(after[:end]))
			rest = after[end:]
		}
		ch.params[key] = val.String()
	}
}
