package main

import (
	"flag"
	"log/slog"
	"time"

	"github.com/lariat-gw/lariat/predlog"
)

// predlogFlags are the flags of the prediction log.
type predlogFlags struct {
	url                      string
	flush                    time.Duration
	queue                    int
	maxFileSize              int64
	kafkaUser, kafkaPassword string
	sink                     string
}

func (f *predlogFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.url, "prediction-log", "",
		"record every answer (route and model versions, arm, features served, outputs) to file:///DIR (Parquet, by route and hour) or kafka://HOST:PORT[,HOST:PORT]/TOPIC[?tls=true&sasl=scram-sha-512...] (JSON); off when empty")
	fs.DurationVar(&f.flush, "prediction-log-flush", predlog.DefaultFlushInterval, "how often the prediction log completes its files; a crash loses at most this much")
	fs.IntVar(&f.queue, "prediction-log-queue", predlog.DefaultQueueSize, "records waiting for the prediction log writer; beyond it records are dropped and counted")
	fs.Int64Var(&f.maxFileSize, "prediction-log-max-file-size", predlog.DefaultMaxFileSize, "file:// prediction log: start a new file after about this many bytes")
	fs.StringVar(&f.kafkaUser, "prediction-log-kafka-user", "", "kafka:// prediction log with sasl=...: the user")
	fs.StringVar(&f.kafkaPassword, "prediction-log-kafka-password", "", "kafka:// prediction log with sasl=...: the password (prefer its environment variable)")
	fs.StringVar(&f.sink, "prediction-log-sink", "", "the prediction log's sink process, which writes the files or produces to Kafka; default: "+predlog.SinkProgram+" next to this program, else on PATH")
}

// open starts the prediction log, or returns nil when it is off.
func (f *predlogFlags) open(log *slog.Logger) (*predlog.Log, error) {
	if f.url == "" {
		return nil, nil
	}
	opts := predlog.Options{FlushInterval: f.flush, QueueSize: f.queue, MaxFileSize: f.maxFileSize, Logger: log,
		KafkaUser: f.kafkaUser, KafkaPassword: f.kafkaPassword}
	if f.sink != "" {
		opts.SinkCommand = []string{f.sink}
	}
	l, err := predlog.Open(f.url, opts)
	if err != nil {
		return nil, err
	}
	log.Info("prediction log on", "sink", l.Status().Sink, "flush", f.flush)
	return l, nil
}

// closeLog writes what the prediction log still holds.
func closeLog(l *predlog.Log, log *slog.Logger) {
	start := time.Now()
	if err := l.Close(); err != nil {
		log.Error("prediction log closed with an error", "error", err)
	}
	st := l.Status()
	log.Info("prediction log closed", "written", st.Written, "dropped", st.Dropped, "duration", time.Since(start).Round(time.Millisecond))
}
