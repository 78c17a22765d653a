package router

import (
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/golang-jwt/jwt/v5"
	"github.com/valyala/fasthttp"

	"github.com/lariat-gw/lariat/config"
	"github.com/lariat-gw/lariat/internal/lazymetric"
)

// authenticator checks the credentials of a route's callers.
type authenticator struct {
	keys [][sha256.Size]byte
	// keyNames name the keys of a tenant (nil for a route's own keys).
	keyNames []string
	parser   *jwt.Parser
	keyFn    jwt.Keyfunc
	// claims are the claims a token must carry, with their values.
	claims map[string]string
	denied *lazymetric.Counter
}

func newAuthenticator(a *config.Auth, labels string, set *metrics.Set) (*authenticator, error) {
	if a == nil {
		return nil, nil
	}
	au := &authenticator{}
	if err := au.addKeys(a.APIKeys); err != nil {
		return nil, err
	}
	if a.JWT != nil {
		if err := au.setJWT(a.JWT, nil, config.String{}, false); err != nil {
			return nil, err
		}
	}
	return au.forRoute(labels, set), nil
}

// newTenantAuth compiles a tenant's auth block; offline skips fetching a
// JWKS URL.
func newTenantAuth(a *config.TenantAuth, offline bool) (*authenticator, error) {
	if a == nil {
		return nil, nil
	}
	au := &authenticator{}
	hashes := make([]config.String, len(a.APIKeys))
	for i, k := range a.APIKeys {
		hashes[i] = k.Hash
		au.keyNames = append(au.keyNames, k.Name.Value)
	}
	if err := au.addKeys(hashes); err != nil {
		return nil, err
	}
	if j := a.JWT; j != nil {
		if err := au.setJWT(&j.JWTAuth, j.RequiredClaims, j.JWKSURL, offline); err != nil {
			return nil, err
		}
	}
	return au, nil
}

// forRoute returns a copy of a that counts its refusals in the route's
// series.
func (a *authenticator) forRoute(labels string, set *metrics.Set) *authenticator {
	if a == nil {
		return nil
	}
	c := *a
	c.denied = lazymetric.NewCounter(set, `lariat_requests_unauthorized_total{`+labels+`}`)
	return &c
}

func (a *authenticator) addKeys(keys []config.String) error {
	for _, k := range keys {
		var sum [sha256.Size]byte
		if _, err := hex.Decode(sum[:], []byte(strings.TrimPrefix(k.Value, "sha256:"))); err != nil {
			return config.Errorf(k.Pos, "auth.api_keys: %v", err)
		}
		a.keys = append(a.keys, sum)
	}
	return nil
}

func (a *authenticator) setJWT(j *config.JWTAuth, claims map[string]config.String, jwksURL config.String, offline bool) error {
	opts := []jwt.ParserOption{jwt.WithExpirationRequired()}
	if j.Audience.Value != "" {
		opts = append(opts, jwt.WithAudience(j.Audience.Value))
	}
	if j.Issuer.Value != "" {
		opts = append(opts, jwt.WithIssuer(j.Issuer.Value))
	}
	switch {
	case j.HS256SecretEnv.Value != "":
		secret := os.Getenv(j.HS256SecretEnv.Value)
		if secret == "" && !offline {
			return config.Errorf(j.HS256SecretEnv.Pos, "auth.jwt.hs256_secret_env: environment variable %s is empty", j.HS256SecretEnv.Value)
		}
		opts = append(opts, jwt.WithValidMethods([]string{"HS256"}))
		a.keyFn = func(*jwt.Token) (any, error) { return []byte(secret), nil }
	case jwksURL.Value != "":
		opts = append(opts, jwt.WithValidMethods([]string{"RS256"}))
		if offline {
			a.keyFn = func(*jwt.Token) (any, error) { return nil, errors.New("no keys") }
			break
		}
		keys, err := fetchJWKS(jwksURL.Value)
		if err != nil {
			return config.Errorf(jwksURL.Pos, "auth.jwt.jwks_url: %v", err)
		}
		a.keyFn = keys.keyFunc
	default:
		pem, err := os.ReadFile(j.RS256PublicKeyFile.Value)
		if err != nil {
			return config.Errorf(j.RS256PublicKeyFile.Pos, "auth.jwt.rs256_public_key_file: %v", err)
		}
		var key *rsa.PublicKey
		if key, err = jwt.ParseRSAPublicKeyFromPEM(pem); err != nil {
			return config.Errorf(j.RS256PublicKeyFile.Pos, "auth.jwt.rs256_public_key_file: %v", err)
		}
		opts = append(opts, jwt.WithValidMethods([]string{"RS256"}))
		a.keyFn = func(*jwt.Token) (any, error) { return key, nil }
	}
	if len(claims) > 0 {
		a.claims = make(map[string]string, len(claims))
		for k, v := range claims {
			a.claims[k] = v.Value
		}
	}
	a.parser = jwt.NewParser(opts...)
	return nil
}

var errNoCredentials = errors.New("missing credentials: send X-API-Key or Authorization: Bearer")

// check returns nil when the request carries a valid API key or JWT, and
// the index of the API key it carries (-1 for a JWT).
func (a *authenticator) check(rc *fasthttp.RequestCtx) (int, error) {
	cred := rc.Request.Header.Peek("X-API-Key")
	bearer := false
	if len(cred) == 0 {
		h := rc.Request.Header.Peek("Authorization")
		if len(h) > 7 && strings.EqualFold(string(h[:7]), "bearer ") {
			cred, bearer = h[7:], true
		}
	}
	if len(cred) == 0 {
		return -1, errNoCredentials
	}
	if len(a.keys) > 0 {
		sum := sha256.Sum256(cred)
		key := -1
		for i := range a.keys {
			if subtle.ConstantTimeCompare(sum[:], a.keys[i][:]) == 1 {
				key = i
			}
		}
		if key >= 0 {
			return key, nil
		}
	}
	if a.parser != nil && bearer {
		tok, err := a.parser.Parse(string(cred), a.keyFn)
		if err != nil {
			return -1, fmt.Errorf("invalid token: %w", err)
		}
		if err := a.checkClaims(tok); err != nil {
			return -1, err
		}
		return -1, nil
	}
	return -1, errors.New("invalid credentials")
}

// checkClaims checks the required claims: a string claim equal to the
// value or holding it among space-separated words (as OAuth's scope), or
// a list holding it.
func (a *authenticator) checkClaims(tok *jwt.Token) error {
	if len(a.claims) == 0 {
		return nil
	}
	mc, _ := tok.Claims.(jwt.MapClaims)
	for name, want := range a.claims {
		switch v := mc[name].(type) {
		case string:
			if v == want || slices.Contains(strings.Fields(v), want) {
				continue
			}
		case []any:
			found := false
			for _, e := range v {
				if s, ok := e.(string); ok && s == want {
					found = true
				}
			}
			if found {
				continue
			}
		}
		return fmt.Errorf("invalid token: claim %q must be %q", name, want)
	}
	return nil
}

func writeUnauthorized(rc *fasthttp.RequestCtx, route string, err error) {
	WriteError(rc, fasthttp.StatusUnauthorized, err.Error(), route, "")
	rc.Response.Header.Set("WWW-Authenticate", `Bearer realm="lariat"`)
}

// jwks is the RS256 keys of a JSON Web Key Set, by key id.
type jwks struct {
	keys map[string]*rsa.PublicKey
}

// fetchJWKS reads the RSA keys of the JWKS at url.
func fetchJWKS(url string) (*jwks, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return nil, fmt.Errorf("cannot read key set: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("cannot read key set: %s answered %s", url, resp.Status)
	}
	var set struct {
		Keys []struct {
			Kty string `json:"kty"`
			Kid string `json:"kid"`
			Use string `json:"use"`
			N   string `json:"n"`
			E   string `json:"e"`
		} `json:"keys"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&set); err != nil {
		return nil, fmt.Errorf("key set is not a JWKS: %w", err)
	}
	out := &jwks{keys: map[string]*rsa.PublicKey{}}
	for _, k := range set.Keys {
		if k.Kty != "RSA" || (k.Use != "" && k.Use != "sig") {
			continue
		}
		n, err1 := base64.RawURLEncoding.DecodeString(k.N)
		e, err2 := base64.RawURLEncoding.DecodeString(k.E)
		if err1 != nil || err2 != nil || len(e) == 0 || len(e) > 4 {
			return nil, fmt.Errorf("key %q: invalid n or e", k.Kid)
		}
		exp := 0
		for _, b := range e {
			exp = exp<<8 | int(b)
		}
		out.keys[k.Kid] = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: exp}
	}
	if len(out.keys) == 0 {
		return nil, errors.New("key set holds no RSA signing key")
	}
	return out, nil
}

func (j *jwks) keyFunc(t *jwt.Token) (any, error) {
	kid, _ := t.Header["kid"].(string)
	if k, ok := j.keys[kid]; ok {
		return k, nil
	}
	if kid == "" && len(j.keys) == 1 {
		for _, k := range j.keys {
			return k, nil
		}
	}
	return nil, fmt.Errorf("unknown key id %q", kid)
}
