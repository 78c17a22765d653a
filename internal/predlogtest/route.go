package predlogtest

import "fmt"

// RankedRoute is the route the prediction-log tests serve at /ranked: the
// demo store's driver_stats features of the request's driver, then a
// split, sticky on the request's user, between the models rank@control
// (weight control, of 100) and rank@canary, whose score is the answer.
// timeout is the route's, callTimeout each model call's ("" for the
// default), log the route's log block.
func RankedRoute(timeout, callTimeout string, control int, log string) string {
	if callTimeout != "" {
		callTimeout = "timeout: " + callTimeout + ", "
	}
	return fmt.Sprintf(`name: ranked
endpoint: /ranked
timeout: %[1]s
tasks:
  features:
    type: feature
    inputs:
      entities: {driver_id: '{{ .request.driver }}'}
      features: [driver_stats:conv_rate, driver_stats:rating]
  experiment:
    type: split
    inputs:
      sticky: '{{ .request.user }}'
      arms:
        - {name: control, weight: %[2]d, run: [ctrl]}
        - {name: canary, weight: %[3]d, run: [cand]}
  ctrl:
    type: http
    inputs: {model: rank@control, %[4]sbody: '{"f": {{ .tasks.features.body }}}'}
    output: {path: response.body.score, from: score}
  cand:
    type: http
    inputs: {model: rank@canary, %[4]sbody: '{"f": {{ .tasks.features.body }}}'}
    output: {path: response.body.score, from: score}
%[5]s
`, timeout, control, 100-control, callTimeout, log)
}
