package router

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"

	"github.com/lariat-gw/lariat/config"
	"github.com/lariat-gw/lariat/internal/jsonutil"
	"github.com/lariat-gw/lariat/quota"
)

// Tenant is a compiled tenant.yaml: the auth its routes share and the
// quotas that bound them together. Its routes hold it; a changed tenant
// file makes a new Tenant and recompiles the tenant's routes.
type Tenant struct {
	Config *config.Tenant

	auth     *authenticator
	rate     quota.Rate
	inflight *quota.InFlight
	// keys[i] is the quota of the tenant's API key i.
	keys []keyQuota
	// overRate and overInFlight count refusals. Tenant series are global,
	// shared by the versions of a tenant across reloads.
	overRate     *metrics.Counter
	overInFlight *metrics.Counter
	// rateText and inflightText describe the quotas in 429 answers.
	rateText, inflightText string
	// adminTokens are the SHA-256 sums of the tenant's admin tokens.
	adminTokens [][sha256.Size]byte
}

type keyQuota struct {
	name                   string
	rate                   quota.Rate
	inflight               *quota.InFlight
	overRate, overInFlight *metrics.Counter
	rateText, inflightText string
}

// TenantOptions are what compiling a tenant needs from its surroundings.
type TenantOptions struct {
	// Store counts the rates of tenants whose quotas.scope is global; nil
	// rejects such tenants, unless Offline.
	Store quota.Store
	// Offline compiles without the network and without a quota store:
	// for checking files (lariat validate), not for serving.
	Offline bool
}

// NewTenant compiles the tenant c.
func NewTenant(c *config.Tenant, o TenantOptions) (*Tenant, error) {
	t := &Tenant{Config: c}
	label := `tenant=` + strconv.Quote(c.Name)
	var err error
	if t.auth, err = newTenantAuth(c.Auth, o.Offline); err != nil {
		return nil, err
	}
	for _, tok := range c.AdminTokens {
		var sum [sha256.Size]byte
		if _, err := hex.Decode(sum[:], []byte(strings.TrimPrefix(tok.Value, "sha256:"))); err != nil {
			return nil, config.Errorf(tok.Pos, "admin_tokens: %v", err)
		}
		t.adminTokens = append(t.adminTokens, sum)
	}
	q := c.Quotas
	if q == nil {
		q = &config.Quotas{}
	}
	global := q.Scope.Value == config.ScopeGlobal
	if global && o.Store == nil && !o.Offline {
		return nil, config.Errorf(q.Scope.Pos, "quotas.scope global counts in Redis: start lariat serve with --quota-redis ADDR")
	}
	newRate := func(key string, l config.Quota) quota.Rate {
		switch {
		case l.RequestsPerSecond <= 0:
			return nil
		case global && o.Store != nil:
			return quota.NewGlobal(o.Store, c.Name+key, l.RequestsPerSecond, l.BurstOrDefault())
		}
		return quota.NewLocal(l.RequestsPerSecond, l.BurstOrDefault())
	}
	t.rate = newRate("", q.Quota)
	t.inflight = quota.NewInFlight(q.InFlight)
	t.rateText, t.inflightText = rateText(q.Quota), inflightText(q.Quota)
	t.overRate = metrics.GetOrCreateCounter(`lariat_quota_rejected_total{` + label + `,quota="rate"}`)
	t.overInFlight = metrics.GetOrCreateCounter(`lariat_quota_rejected_total{` + label + `,quota="in_flight"}`)
	if c.Auth != nil {
		for _, k := range c.Auth.APIKeys {
			l := k.Quota
			if l == nil {
				l = q.PerKey
			}
			kq := keyQuota{name: k.Name.Value}
			if l != nil {
				kl := label + `,key=` + strconv.Quote(k.Name.Value)
				kq.rate = newRate(":key:"+k.Name.Value, *l)
				kq.inflight = quota.NewInFlight(l.InFlight)
				kq.rateText, kq.inflightText = rateText(*l), inflightText(*l)
				kq.overRate = metrics.GetOrCreateCounter(`lariat_quota_rejected_total{` + kl + `,quota="key_rate"}`)
				kq.overInFlight = metrics.GetOrCreateCounter(`lariat_quota_rejected_total{` + kl + `,quota="key_in_flight"}`)
			}
			t.keys = append(t.keys, kq)
		}
	}
	return t, nil
}

func rateText(q config.Quota) string {
	return fmt.Sprintf("%g requests per second, burst %d", q.RequestsPerSecond, q.BurstOrDefault())
}

func inflightText(q config.Quota) string {
	return fmt.Sprintf("%d requests in flight", q.InFlight)
}

// AdminAllows reports whether token is one of the tenant's admin tokens.
func (t *Tenant) AdminAllows(token []byte) bool {
	sum := sha256.Sum256(token)
	ok := 0
	for i := range t.adminTokens {
		ok |= subtle.ConstantTimeCompare(sum[:], t.adminTokens[i][:])
	}
	return ok == 1
}

// Name returns the tenant's name.
func (t *Tenant) Name() string { return t.Config.Name }

// InFlight returns the tenant's requests in flight.
func (t *Tenant) InFlight() int { return t.inflight.Count() }

// Quota causes, as 429 answers name them.
const (
	causeRate        = "rate"
	causeInFlight    = "in_flight"
	causeKeyRate     = "key_rate"
	causeKeyInFlight = "key_in_flight"
)

// admit applies the tenant's quotas to a request authenticated with API
// key key (-1: none of the tenant's keys). It takes the in-flight slots
// it reports in a; on refusal it has answered 429 and holds nothing.
func (t *Tenant) admit(rc *fasthttp.RequestCtx, route string, key int, a *Admission) bool {
	var kq *keyQuota
	if key >= 0 && key < len(t.keys) {
		kq = &t.keys[key]
	}
	if kq != nil && kq.rate != nil {
		if ok, after := kq.rate.Allow(); !ok {
			kq.overRate.Inc()
			t.writeOver(rc, route, causeKeyRate, kq.name, kq.rateText, after)
			return false
		}
	}
	if t.rate != nil {
		if ok, after := t.rate.Allow(); !ok {
			t.overRate.Inc()
			t.writeOver(rc, route, causeRate, "", t.rateText, after)
			return false
		}
	}
	if kq != nil && kq.inflight != nil {
		if !kq.inflight.Acquire() {
			kq.overInFlight.Inc()
			t.writeOver(rc, route, causeKeyInFlight, kq.name, kq.inflightText, time.Second)
			return false
		}
		a.key = kq
	}
	if t.inflight != nil {
		if !t.inflight.Acquire() {
			if a.key != nil {
				a.key.inflight.Release()
				a.key = nil
			}
			t.overInFlight.Inc()
			t.writeOver(rc, route, causeInFlight, "", t.inflightText, time.Second)
			return false
		}
		a.tenant = t
	}
	return true
}

// writeOver answers 429 naming the quota exceeded.
func (t *Tenant) writeOver(rc *fasthttp.RequestCtx, route, cause, key, limit string, after time.Duration) {
	secs := quota.RetryAfterSeconds(after)
	rc.Response.Reset()
	rc.SetStatusCode(fasthttp.StatusTooManyRequests)
	rc.Response.Header.SetContentTypeBytes(hdrContentType)
	rc.Response.Header.SetBytesKV(hdrRetryAfter, strconv.AppendInt(nil, int64(secs), 10))
	who := "tenant " + strconv.Quote(t.Config.Name)
	if key != "" {
		who = "API key " + strconv.Quote(key) + " of " + who
	}
	var b []byte
	b = append(b, `{"error":`...)
	b = jsonutil.AppendString(b, who+" is over its quota ("+limit+"); retry after "+strconv.Itoa(secs)+"s")
	b = append(b, `,"route":`...)
	b = jsonutil.AppendString(b, route)
	b = append(b, `,"tenant":`...)
	b = jsonutil.AppendString(b, t.Config.Name)
	b = append(b, `,"quota":`...)
	b = jsonutil.AppendString(b, cause)
	if key != "" {
		b = append(b, `,"key":`...)
		b = jsonutil.AppendString(b, key)
	}
	b = append(b, '}')
	rc.Response.SetBody(b)
}

// Admission is what an admitted request holds until it is answered:
// in-flight slots of its tenant, its API key and its route.
type Admission struct {
	tenant   *Tenant
	key      *keyQuota
	route    *limiter
	admitted time.Time
}

// Release gives back what the admission of a request that was not served
// holds.
func (a *Admission) Release() { a.release(nil) }

// release gives back what the admission holds; rc holds the answer when
// the request was served.
func (a *Admission) release(rc *fasthttp.RequestCtx) {
	if a.route != nil {
		a.route.release(rc, a.admitted)
		a.route = nil
	}
	if a.key != nil {
		a.key.inflight.Release()
		a.key = nil
	}
	if a.tenant != nil {
		a.tenant.inflight.Release()
		a.tenant = nil
	}
}
