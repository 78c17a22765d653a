// Package upstream owns the calls the gateway makes to model servers: one
// pooled, kept-alive connection pool and one adaptive concurrency limit per
// upstream host, circuit breakers, retries within the route budget, hedged
// and fallback races, and the classification of every failure into an
// upstream fault (which the breaker counts) or a local one (which it does
// not).
//
// A call is a stack of layers, outermost first (see Caller.Call):
//
//	retry within the route budget   Caller.Call
//	hedge / fallback race           Caller.race
//	admission (concurrency limit)   Target.Try
//	circuit breaker                 Target.Try
//	transport                       Pool's Transport (fasthttp, with one
//	                                resend of a request that met a dead
//	                                kept-alive connection)
//
// Admission and the breaker sit below the race because a fallback is
// another upstream with its own limit and breaker. Every layer takes the
// route deadline: no wait, retry, hedge or body read outlives it.
package upstream
