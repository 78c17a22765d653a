// Package predlogtest runs the prediction log's sink process in tests: a
// test binary starts itself as the sink process (the code of
// lariat-predlog), so that tests of a prediction log need no build of
// lariat-predlog. It also holds the route those tests serve (RankedRoute).
package predlogtest

import (
	"os"

	"github.com/lariat-gw/lariat/predlog/sink"
)

// sinkArg is the first argument of a test binary started as the sink process.
const sinkArg = "lariat-predlog-sink-process"

// Main runs the sink process and exits when the test binary was started as
// one (by a log whose Options.SinkCommand is Command()). Call it first in
// TestMain.
func Main() {
	if len(os.Args) > 1 && os.Args[1] == sinkArg {
		os.Exit(sink.Main(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	}
}

// Command is the predlog.Options.SinkCommand that starts this test binary
// as the sink process.
func Command() []string {
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	return []string{exe, sinkArg}
}
