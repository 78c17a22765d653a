package ingest

import (
	"strconv"

	"github.com/VictoriaMetrics/metrics"
)

// viewMetrics are the row counters of one feature view, in the default
// metrics set:
//
//	lariat_ingest_rows_written_total{view="..."}
//	lariat_ingest_rows_skipped_total{view="..."}              (not newer than the stored row)
//	lariat_ingest_rows_rejected_total{view="...",reason="..."}
type viewMetrics struct {
	written  *metrics.Counter
	skipped  *metrics.Counter
	rejected map[Reason]*metrics.Counter
}

func newViewMetrics(view string) *viewMetrics {
	label := strconv.Quote(view)
	m := &viewMetrics{
		written:  metrics.GetOrCreateCounter(`lariat_ingest_rows_written_total{view=` + label + `}`),
		skipped:  metrics.GetOrCreateCounter(`lariat_ingest_rows_skipped_total{view=` + label + `}`),
		rejected: make(map[Reason]*metrics.Counter, len(allReasons)),
	}
	for _, r := range allReasons {
		m.rejected[r] = metrics.GetOrCreateCounter(`lariat_ingest_rows_rejected_total{view=` + label + `,reason="` + string(r) + `"}`)
	}
	return m
}
