// Command lariat-predlog is the prediction log's sink process: lariat serve
// --prediction-log starts it and writes one JSON record per line to its
// standard input; it stores them as Parquet files (file:///DIR) or produces
// them to Kafka (kafka://...), and answers each command of the log on its
// standard output (see package predlog). It keeps Parquet and Kafka out of
// the gateway's binary.
//
// It ignores SIGINT and SIGTERM: it stops when the gateway tells it to,
// after the gateway has written what it still held, or when its input ends.
package main

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/lariat-gw/lariat/predlog/sink"
)

func main() {
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM)
	os.Exit(sink.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
