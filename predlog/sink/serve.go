package sink

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/lariat-gw/lariat/internal/cli"
	"github.com/lariat-gw/lariat/predlog"
)

// Open opens the sink a prediction log URL names:
//
//	file:///DIR                             Parquet files under DIR (NewFileSink)
//	kafka://HOST:PORT[,HOST:PORT]/TOPIC     JSON records to a Kafka topic (NewKafkaSink)
func Open(rawURL string, opts predlog.Options) (predlog.Sink, error) {
	switch {
	case strings.HasPrefix(rawURL, "file://"):
		return NewFileSink(rawURL, opts)
	case strings.HasPrefix(rawURL, "kafka://"):
		return NewKafkaSink(rawURL, opts)
	}
	return nil, fmt.Errorf("unsupported prediction log URL %q: want file:///DIR or kafka://HOST:PORT[,HOST:PORT]/TOPIC", predlog.RedactURL(rawURL))
}

// ErrAbandoned is Serve's error when its input ended without the close
// command: the log's process died, and the sink was left as it was.
var ErrAbandoned = errors.New("the prediction log's input ended without close: files left incomplete")

// maxLine bounds one record line (a recorded request body included).
const maxLine = 256 << 20

// Serve runs the sink process protocol (see predlog.CmdWrite) for s: it
// reads records and commands from in and answers each command on out. It
// returns nil after the close command, ErrAbandoned when in ends before.
// A record that does not decode is lost and counted in the next answer.
func Serve(s predlog.Sink, in io.Reader, out io.Writer) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	w := bufio.NewWriter(out)
	var (
		recs    []*predlog.Record
		n       int // records of the batch
		badRecs int
		badErr  error
	)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.HasPrefix(line, []byte(`{"op":`)) {
			if n == len(recs) {
				recs = append(recs, new(predlog.Record))
			}
			if err := decodeRecord(line, recs[n]); err != nil {
				badRecs++
				if badErr == nil {
					badErr = fmt.Errorf("cannot decode a prediction log record: %w", err)
				}
				continue
			}
			n++
			continue
		}
		var (
			lost int
			err  error
		)
		cmd := string(line)
		switch cmd {
		case predlog.CmdWrite:
			lost, err = s.Write(recs[:n])
			n = 0
		case predlog.CmdFlush:
			lost, err = s.Flush()
		case predlog.CmdCheck:
			err = s.Check()
		case predlog.CmdClose:
			lost, err = s.Close()
		default:
			err = fmt.Errorf("unknown prediction log sink command %.100s", line)
		}
		a := predlog.SinkAnswer{Lost: lost + badRecs}
		if dc, ok := s.(predlog.DropCounter); ok {
			a.Full, a.Failed = dc.TakeDrops()
		}
		if err = errors.Join(err, badErr); err != nil {
			a.Error = err.Error()
		}
		badRecs, badErr = 0, nil
		if werr := writeAnswer(w, a); werr != nil {
			return werr
		}
		if cmd == predlog.CmdClose {
			return nil
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("cannot read the prediction log: %w", err)
	}
	return ErrAbandoned
}

func writeAnswer(w *bufio.Writer, a predlog.SinkAnswer) error {
	data, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("BUG: cannot encode an answer: %w", err)
	}
	w.Write(data)
	w.WriteByte('\n')
	if err := w.Flush(); err != nil {
		return fmt.Errorf("cannot answer the prediction log: %w", err)
	}
	return nil
}

// Main is the sink process (lariat-predlog): it parses args, opens the
// sink, answers that it is ready (or why it could not open) and serves
// the log on stdin and stdout. It returns the exit status.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	const prog = predlog.SinkProgram
	fs := flag.NewFlagSet(prog, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s -prediction-log URL [flags]\n\n"+
			"The prediction log's sink process: lariat serve starts it and writes one JSON\n"+
			"record per line to its standard input. Flags:\n", prog)
		fs.PrintDefaults()
	}
	var opts predlog.Options
	rawURL := fs.String("prediction-log", "", "file:///DIR (Parquet, by route and hour) or kafka://HOST:PORT[,HOST:PORT]/TOPIC[?...] (JSON)")
	fs.DurationVar(&opts.FlushInterval, "prediction-log-flush", predlog.DefaultFlushInterval, "the log's flush interval (kafka:// reports a stall after three)")
	fs.Int64Var(&opts.MaxFileSize, "prediction-log-max-file-size", predlog.DefaultMaxFileSize, "file://: start a new file after about this many bytes")
	fs.StringVar(&opts.KafkaUser, "prediction-log-kafka-user", "", "kafka:// with sasl=...: the user")
	fs.StringVar(&opts.KafkaPassword, "prediction-log-kafka-password", "", "kafka:// with sasl=...: the password (prefer its environment variable)")
	if err := cli.ParseFlags(fs, args); err != nil {
		return cli.ExitCode(prog, err, stderr)
	}
	if *rawURL == "" || fs.NArg() > 0 {
		return cli.ExitCode(prog, cli.Usagef("want -prediction-log URL and no arguments"), stderr)
	}
	w := bufio.NewWriter(stdout)
	s, err := Open(*rawURL, opts)
	if err != nil {
		_ = writeAnswer(w, predlog.SinkAnswer{Error: err.Error()})
		return 1
	}
	if err := writeAnswer(w, predlog.SinkAnswer{}); err != nil {
		return cli.ExitCode(prog, err, stderr)
	}
	return cli.ExitCode(prog, Serve(s, stdin, stdout), stderr)
}

// OpenLog starts a log that writes to the sink rawURL names in this
// process, without a sink process: for programs that link the sinks anyway
// and for tests.
func OpenLog(rawURL string, opts predlog.Options) (*predlog.Log, error) {
	s, err := Open(rawURL, opts)
	if err != nil {
		return nil, err
	}
	return predlog.New(s, predlog.RedactURL(rawURL), opts), nil
}
