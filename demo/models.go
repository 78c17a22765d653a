package demo

import (
	"fmt"
	"math"
	"net"
	"sort"
	"strconv"

	"github.com/tidwall/gjson"
	"github.com/valyala/fasthttp"

	"github.com/lariat-gw/lariat/internal/accept"
	"github.com/lariat-gw/lariat/internal/jsonutil"
)

// Model is an example model: a name, a version and a predict function from
// request JSON to response JSON.
type Model struct {
	Name    string
	Version string
	Predict func(req []byte, dst []byte) ([]byte, error)
}

// Models are the example models the demo serves.
var Models = []Model{
	{Name: "driver-rank", Version: "1", Predict: rankDrivers},
	{Name: "fraud-score", Version: "3", Predict: scoreFraud},
}

// Host returns the host name the demo routes use for model m.
func (m Model) Host() string { return m.Name + ".models.lariat.local" }

// driverRankWeights are the coefficients of the ranking model: a logistic
// regression over distance, rating, acceptance rate and trips.
var driverRankWeights = struct {
	bias, distanceKm, rating, acceptance, trips float64
}{bias: -1.2, distanceKm: -0.45, rating: 0.9, acceptance: 2.1, trips: 0.002}

func sigmoid(z float64) float64 { return 1 / (1 + math.Exp(-z)) }

type scored struct {
	id    string
	score float64
}

// rankDrivers scores each candidate in "drivers" (or "instances") with the
// logistic regression and returns them best first.
func rankDrivers(req, dst []byte) ([]byte, error) {
	doc := gjson.ParseBytes(req)
	drivers := doc.Get("drivers")
	if !drivers.Exists() {
		drivers = doc.Get("instances")
	}
	if !drivers.IsArray() {
		return nil, fmt.Errorf(`request needs "drivers": a list of candidates`)
	}
	w := driverRankWeights
	var out []scored
	var err error
	drivers.ForEach(func(_, d gjson.Result) bool {
		id := d.Get("driver_id")
		if !id.Exists() {
			err = fmt.Errorf("every driver needs a driver_id")
			return false
		}
		z := w.bias +
			w.distanceKm*d.Get("distance_km").Float() +
			w.rating*d.Get("rating").Float() +
			w.acceptance*firstNumber(d, "acceptance_rate", "acc_rate") +
			w.trips*firstNumber(d, "trips", "avg_daily_trips")
		out = append(out, scored{id: id.Raw, score: sigmoid(z)})
		return true
	})
	if err != nil {
		return nil, err
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].score > out[j].score })
	dst = append(dst, `{"model":"driver-rank","version":"1","ranking":[`...)
	for i, s := range out {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"driver_id":`...)
		dst = append(dst, s.id...)
		dst = append(dst, `,"score":`...)
		dst = strconv.AppendFloat(dst, math.Round(s.score*1e4)/1e4, 'f', -1, 64)
		dst = append(dst, '}')
	}
	return append(dst, "]}"...), nil
}

func firstNumber(d gjson.Result, names ...string) float64 {
	for _, n := range names {
		if v := d.Get(n); v.Exists() {
			return v.Float()
		}
	}
	return 0
}

// scoreFraud scores the order in "order" with a logistic model over amount,
// account age, payment method and night-time ordering.
func scoreFraud(req, dst []byte) ([]byte, error) {
	o := gjson.GetBytes(req, "order")
	if !o.IsObject() {
		return nil, fmt.Errorf(`request needs "order": an object`)
	}
	z := -3.0 + 0.015*o.Get("amount").Float() - 0.004*o.Get("account_age_days").Float()
	if o.Get("payment").String() == "cash" {
		z -= 0.5
	}
	if h := o.Get("hour"); h.Exists() && (h.Int() < 5 || h.Int() >= 23) {
		z += 1.1
	}
	p := sigmoid(z)
	dst = append(dst, `{"model":"fraud-score","version":"3","score":`...)
	dst = strconv.AppendFloat(dst, math.Round(p*1e4)/1e4, 'f', -1, 64)
	dst = append(dst, `,"flagged":`...)
	dst = strconv.AppendBool(dst, p > 0.5)
	return append(dst, '}'), nil
}

// ServeModel serves m on ln: POST /predict with JSON in, JSON out; 400 with
// {"error": ...} for a request the model cannot score.
func ServeModel(ln net.Listener, m Model) *fasthttp.Server {
	s := &fasthttp.Server{
		Name: m.Name,
		Handler: func(rc *fasthttp.RequestCtx) {
			rc.SetContentType("application/json")
			if string(rc.Path()) != "/predict" || !rc.IsPost() {
				rc.SetStatusCode(fasthttp.StatusNotFound)
				rc.SetBodyString(`{"error":"POST /predict"}`)
				return
			}
			if !gjson.ValidBytes(rc.PostBody()) {
				rc.SetStatusCode(fasthttp.StatusBadRequest)
				rc.SetBodyString(`{"error":"request is not valid JSON"}`)
				return
			}
			out, err := m.Predict(rc.PostBody(), nil)
			if err != nil {
				rc.SetStatusCode(fasthttp.StatusBadRequest)
				rc.SetBody(append(jsonutil.AppendString([]byte(`{"error":`), err.Error()), '}'))
				return
			}
			rc.SetBody(out)
		},
	}
	go s.Serve(accept.Retrying(ln, nil)) //nolint:errcheck // Serve returns when the server shuts down.
	return s
}
