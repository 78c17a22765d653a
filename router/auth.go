package router

import (
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/VictoriaMetrics/metrics"
	"github.com/golang-jwt/jwt/v5"
	"github.com/valyala/fasthttp"

	"github.com/lariat-gw/lariat/config"
	"github.com/lariat-gw/lariat/internal/lazymetric"
)

// authenticator checks the credentials of a route's callers.
type authenticator struct {
	keys   [][sha256.Size]byte
	parser *jwt.Parser
	keyFn  jwt.Keyfunc
	denied *lazymetric.Counter
}

func newAuthenticator(a *config.Auth, route string, set *metrics.Set) (*authenticator, error) {
	if a == nil {
		return nil, nil
	}
	au := &authenticator{denied: lazymetric.NewCounter(set, `lariat_requests_unauthorized_total{route="`+route+`"}`)}
	for _, k := range a.APIKeys {
		var sum [sha256.Size]byte
		if _, err := hex.Decode(sum[:], []byte(strings.TrimPrefix(k.Value, "sha256:"))); err != nil {
			return nil, config.Errorf(k.Pos, "auth.api_keys: %v", err)
		}
		au.keys = append(au.keys, sum)
	}
	if j := a.JWT; j != nil {
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
			if secret == "" {
				return nil, config.Errorf(j.HS256SecretEnv.Pos, "auth.jwt.hs256_secret_env: environment variable %s is empty", j.HS256SecretEnv.Value)
			}
			opts = append(opts, jwt.WithValidMethods([]string{"HS256"}))
			au.keyFn = func(*jwt.Token) (any, error) { return []byte(secret), nil }
		default:
			pem, err := os.ReadFile(j.RS256PublicKeyFile.Value)
			if err != nil {
				return nil, config.Errorf(j.RS256PublicKeyFile.Pos, "auth.jwt.rs256_public_key_file: %v", err)
			}
			var key *rsa.PublicKey
			if key, err = jwt.ParseRSAPublicKeyFromPEM(pem); err != nil {
				return nil, config.Errorf(j.RS256PublicKeyFile.Pos, "auth.jwt.rs256_public_key_file: %v", err)
			}
			opts = append(opts, jwt.WithValidMethods([]string{"RS256"}))
			au.keyFn = func(*jwt.Token) (any, error) { return key, nil }
		}
		au.parser = jwt.NewParser(opts...)
	}
	return au, nil
}

var errNoCredentials = errors.New("missing credentials: send X-API-Key or Authorization: Bearer")

// check returns nil when the request carries a valid API key or JWT.
func (a *authenticator) check(rc *fasthttp.RequestCtx) error {
	cred := rc.Request.Header.Peek("X-API-Key")
	bearer := false
	if len(cred) == 0 {
		h := rc.Request.Header.Peek("Authorization")
		if len(h) > 7 && strings.EqualFold(string(h[:7]), "bearer ") {
			cred, bearer = h[7:], true
		}
	}
	if len(cred) == 0 {
		return errNoCredentials
	}
	if len(a.keys) > 0 {
		sum := sha256.Sum256(cred)
		ok := 0
		for i := range a.keys {
			ok |= subtle.ConstantTimeCompare(sum[:], a.keys[i][:])
		}
		if ok == 1 {
			return nil
		}
	}
	if a.parser != nil && bearer {
		if _, err := a.parser.Parse(string(cred), a.keyFn); err != nil {
			return fmt.Errorf("invalid token: %w", err)
		}
		return nil
	}
	return errors.New("invalid credentials")
}

func writeUnauthorized(rc *fasthttp.RequestCtx, route string, err error) {
	WriteError(rc, fasthttp.StatusUnauthorized, err.Error(), route, "")
	rc.Response.Header.Set("WWW-Authenticate", `Bearer realm="lariat"`)
}
