// Package exampledata makes the synthetic drivers the examples train on: rows of
// the demo feature view driver_stats (project lariat_demo, see
// featurefetch.DemoViewsYAML) and a label that depends on them.
package exampledata

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/lariat-gw/lariat/featurefetch"
)

// FirstID is the id of the first synthetic driver; the demo seed data uses
// 1001..1050, so these do not collide with it.
const FirstID = 2001

// Driver is one synthetic driver and its label (1: accepted the offer).
type Driver struct {
	ID            int64
	ConvRate      float64
	AccRate       float64
	AvgDailyTrips int64
	Rating        float64
	VehicleType   string
	Active        bool
	Label         int
}

// Drivers returns n drivers. The label is 1 when
// 6(conv_rate-0.5) + 3(acc_rate-0.5) + 1.5(rating-4) + noise > 0.
func Drivers(n int, seed uint64) []Driver {
	r := rand.New(rand.NewPCG(seed, 7))
	vehicles := []string{"sedan", "bike", "van"}
	out := make([]Driver, n)
	for i := range out {
		d := Driver{
			ID:            FirstID + int64(i),
			ConvRate:      round3(r.Float64()),
			AccRate:       round3(r.Float64()),
			AvgDailyTrips: int64(r.IntN(60)),
			Rating:        round3(3 + 2*r.Float64()),
			VehicleType:   vehicles[r.IntN(len(vehicles))],
			Active:        r.IntN(10) > 0,
		}
		z := 6*(d.ConvRate-0.5) + 3*(d.AccRate-0.5) + 1.5*(d.Rating-4) + 0.8*r.NormFloat64()
		if z > 0 {
			d.Label = 1
		}
		out[i] = d
	}
	return out
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// Row returns the driver's driver_stats row at event time t.
func (d *Driver) Row(t time.Time) featurefetch.Row {
	num := func(v any) json.RawMessage { b, _ := json.Marshal(v); return b }
	return featurefetch.Row{
		View:     "driver_stats",
		Entities: map[string]json.RawMessage{"driver_id": num(d.ID)},
		Features: map[string]json.RawMessage{
			"conv_rate":       num(d.ConvRate),
			"acc_rate":        num(d.AccRate),
			"avg_daily_trips": num(d.AvgDailyTrips),
			"rating":          num(d.Rating),
			"vehicle_type":    num(d.VehicleType),
			"is_active":       num(d.Active),
		},
		EventTime: t,
	}
}

// LabelsCSV returns the label file the example trainer reads: driver_id,label.
func LabelsCSV(ds []Driver) []byte {
	var b bytes.Buffer
	b.WriteString("driver_id,label\n")
	for _, d := range ds {
		fmt.Fprintf(&b, "%d,%d\n", d.ID, d.Label)
	}
	return b.Bytes()
}

// StatsCSV returns the drivers as a driver_stats batch file (CSV with an
// event_timestamp column), as the ingestion sidecar loads it.
func StatsCSV(ds []Driver, t time.Time) []byte {
	var b bytes.Buffer
	b.WriteString("driver_id,event_timestamp,conv_rate,acc_rate,avg_daily_trips,rating,vehicle_type,is_active\n")
	ts := t.UTC().Format(time.RFC3339)
	for _, d := range ds {
		fmt.Fprintf(&b, "%d,%s,%g,%g,%d,%g,%s,%t\n", d.ID, ts, d.ConvRate, d.AccRate, d.AvgDailyTrips, d.Rating, d.VehicleType, d.Active)
	}
	return b.Bytes()
}
