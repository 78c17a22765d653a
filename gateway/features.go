package gateway

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"

	"github.com/lariat-gw/lariat/featurefetch"
	"github.com/lariat-gw/lariat/router"
	"github.com/lariat-gw/lariat/tasks"
	"github.com/lariat-gw/lariat/upstream"
)

// OnlineFeaturesPath serves Feast's /get-online-features API when a feature
// store is configured, so Feast clients can use Lariat as their feature
// server.
const OnlineFeaturesPath = "/get-online-features"

var (
	onlineFeaturesOK  = metrics.NewCounter(`lariat_online_features_requests_total{status="200"}`)
	onlineFeaturesBad = metrics.NewCounter(`lariat_online_features_requests_total{status="400"}`)
	onlineFeaturesErr = metrics.NewCounter(`lariat_online_features_requests_total{status="502"}`)
	onlineFeaturesOff = metrics.NewCounter(`lariat_online_features_requests_total{status="503"}`)
	onlineFeaturesDur = metrics.NewPrometheusHistogram(`lariat_online_features_duration_seconds`)
	featureBufPool    sync.Pool
)

func (g *Gateway) serveOnlineFeatures(rc *fasthttp.RequestCtx) {
	if !rc.IsPost() {
		router.WriteError(rc, fasthttp.StatusMethodNotAllowed, "use POST", "", "")
		rc.Response.Header.Set("Allow", "POST")
		return
	}
	start := time.Now()
	fe := g.features
	ctx, cancel := context.WithTimeout(context.Background(), g.opts.FeatureTimeout)
	defer cancel()
	bp, _ := featureBufPool.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	var out []byte
	var err error
	var end time.Time
	ran := fe.StoreBreaker(g.log).Do(start, func() (upstream.Reason, int) {
		out, err = fe.Views.AppendOnlineFeatures(ctx, fe.Store, rc.PostBody(), (*bp)[:0])
		end = time.Now()
		if err == nil {
			g.featuresAnswered.Mark(end, true)
		}
		return g.featuresAnswered.Reason(tasks.StoreReason(err), 0, end), 0
	})
	var bre *featurefetch.BadRequestError
	switch {
	case !ran:
		// The store keeps failing: answer at once rather than wait out
		// the read's timeout.
		onlineFeaturesOff.Inc()
		router.WriteError(rc, fasthttp.StatusServiceUnavailable, "feature store is failing (its breaker is open); retry later", "", "")
		rc.Response.Header.Set("Retry-After", "1")
		out = (*bp)[:0]
	case errors.As(err, &bre):
		onlineFeaturesBad.Inc()
		router.WriteError(rc, fasthttp.StatusBadRequest, bre.Message, "", "")
	case errors.Is(err, context.DeadlineExceeded):
		onlineFeaturesErr.Inc()
		router.WriteError(rc, fasthttp.StatusGatewayTimeout, "feature store did not answer in time", "", "")
	case err != nil:
		onlineFeaturesErr.Inc()
		router.WriteError(rc, fasthttp.StatusBadGateway, "feature store: "+err.Error(), "", "")
	default:
		onlineFeaturesOK.Inc()
		rc.SetContentType("application/json")
		rc.SetBody(out)
	}
	*bp = out[:0]
	featureBufPool.Put(bp)
	if !ran {
		end = time.Now()
	}
	onlineFeaturesDur.Update(end.Sub(start).Seconds())
}
