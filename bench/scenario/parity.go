package scenario

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"reflect"
	"slices"

	"github.com/lariat-gw/lariat/bench"
)

// parity sends one request through the gateway and one through the floor and
// fails unless both answer the same JSON and send the same JSON to each
// model: the floor must do the same work for the comparison to mean anything.
func (e *env) parity(ctx context.Context) error {
	tmpl, err := bench.ParseTemplate(e.sp.body)
	if err != nil {
		return fmt.Errorf("BUG: scenario body template: %w", err)
	}
	body := tmpl.Append(nil, 0, rand.New(rand.NewPCG(7, 7)))
	keys := make([]string, 0, len(e.models))
	for k := range e.models {
		keys = append(keys, k)
	}
	slices.Sort(keys)

	type seen struct {
		answer []byte
		sent   map[string][]byte
	}
	var got [2]seen
	for i, url := range []string{e.lariatURL, e.floorURL} {
		for _, k := range keys {
			if _, err := httpDo(ctx, http.MethodPost, "http://"+e.models[k]+"/-/capture", nil, http.StatusOK); err != nil {
				return fmt.Errorf("parity check: %w", err)
			}
		}
		ans, err := httpDo(ctx, http.MethodPost, url, body, http.StatusOK)
		if err != nil {
			return fmt.Errorf("parity check: %w", err)
		}
		got[i] = seen{answer: ans, sent: map[string][]byte{}}
		for _, k := range keys {
			c, err := httpGet(ctx, "http://"+e.models[k]+"/-/captured")
			if err != nil {
				return fmt.Errorf("parity check: model %s received nothing: %w", k, err)
			}
			got[i].sent[k] = c
		}
	}
	if err := sameJSON(got[0].answer, got[1].answer); err != nil {
		return fmt.Errorf("parity check: the gateway and the floor answer differently: %w\n  lariat: %s\n  floor:  %s",
			err, got[0].answer, got[1].answer)
	}
	for _, k := range keys {
		if err := sameJSON(got[0].sent[k], got[1].sent[k]); err != nil {
			return fmt.Errorf("parity check: model %s receives different requests from the gateway and the floor: %w\n  lariat: %.2000s\n  floor:  %.2000s",
				k, err, got[0].sent[k], got[1].sent[k])
		}
	}
	return nil
}

// sameJSON fails unless a and b hold the same JSON value (object key order
// and spacing aside; numbers compared as written).
func sameJSON(a, b []byte) error {
	va, err := decodeJSON(a)
	if err != nil {
		return err
	}
	vb, err := decodeJSON(b)
	if err != nil {
		return err
	}
	if !reflect.DeepEqual(va, vb) {
		return fmt.Errorf("the JSON values differ")
	}
	return nil
}

func decodeJSON(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("invalid JSON %.200q: %w", data, err)
	}
	return v, nil
}
