package sink

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lariat-gw/lariat/predlog"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// KafkaSink produces each record as one JSON object (Record.AppendJSON) to
// a Kafka topic with franz-go: an idempotent producer (acks=all), records
// batched per partition for the linger time and compressed, keyed by route
// name so a route's records keep their order in one partition. Each record
// carries the header lariat-schema: SchemaVersion.
//
// A batch larger than max_buffered waits for room while the brokers take
// records (burstWait). While the brokers are unreachable the client
// buffers records up to max_buffered; beyond that new records are dropped
// and counted
// (TakeDrops; lariat_prediction_log_dropped_total{reason="queue_full"}), and the log
// reports the stall in /readyz once nothing has been delivered for three
// flush intervals (at least 1s) with records waiting.
//
// URL: kafka://HOST:PORT[,HOST:PORT...]/TOPIC[?param=value&...] with
//
//	compression       lz4 (default), zstd, snappy, gzip or none
//	linger            batching delay per partition (default 10ms)
//	max_buffered      records buffered while brokers are slow or down (default 100000)
//	delivery_timeout  fail (and count) records not delivered within this time (default: none)
//	client_id         the Kafka client id (default lariat)
//	tls               true: connect with TLS, verifying brokers with the system roots
//	tls_ca            PEM file of the CA that signed the brokers' certificates (implies tls)
//	sasl              plain, scram-sha-256 or scram-sha-512, with Options.KafkaUser and
//	                  Options.KafkaPassword (never in the URL)
type KafkaSink struct {
	cl          *kgo.Client
	topic       string
	stall       time.Duration
	maxBuffered int
	pool        sync.Pool

	lastOK atomic.Int64 // unix nanos of the last delivery (or of the start)
	// deliveredOnce is set by the first delivery.
	deliveredOnce atomic.Bool
	// full and failed count records dropped since TakeDrops: the
	// producer's buffer was full, or their delivery failed.
	full, failed atomic.Int64
	errMu        sync.Mutex
	lastErr      error
	errAt        time.Time
	connErr      error // the last failed connection (dial, TLS or SASL), until one succeeds
}

var (
	_ kgo.HookBrokerConnect = (*KafkaSink)(nil)
	_ predlog.DropCounter   = (*KafkaSink)(nil)
)

// TakeDrops implements predlog.DropCounter.
func (s *KafkaSink) TakeDrops() (full, failed int) {
	return int(s.full.Swap(0)), int(s.failed.Swap(0))
}

// OnBrokerConnect remembers why connecting to a broker failed, for Check.
func (s *KafkaSink) OnBrokerConnect(_ kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	s.errMu.Lock()
	s.connErr = err
	s.errMu.Unlock()
}

// KafkaConfig is a parsed kafka:// URL.
type KafkaConfig struct {
	Brokers         []string
	Topic           string
	Compression     kgo.CompressionCodec
	Linger          time.Duration
	MaxBuffered     int
	DeliveryTimeout time.Duration
	ClientID        string
	// TLS turns TLS on; TLSCA is a PEM file of CAs to trust instead of
	// the system's.
	TLS   bool
	TLSCA string
	// SASL is the mechanism: "", plain, scram-sha-256 or scram-sha-512.
	SASL string
}

// ParseKafkaURL parses a kafka:// prediction log URL.
func ParseKafkaURL(rawURL string) (KafkaConfig, error) {
	c := KafkaConfig{Compression: kgo.Lz4Compression(), Linger: 10 * time.Millisecond, MaxBuffered: 100_000, ClientID: "lariat"}
	bad := func(format string, args ...any) (KafkaConfig, error) {
		return c, fmt.Errorf("invalid prediction log URL %q: %s", predlog.RedactURL(rawURL), fmt.Sprintf(format, args...))
	}
	rest, ok := strings.CutPrefix(rawURL, "kafka://")
	if !ok {
		return bad("want kafka://HOST:PORT[,HOST:PORT]/TOPIC")
	}
	rest, query, _ := strings.Cut(rest, "?")
	hosts, topic, _ := strings.Cut(rest, "/")
	if topic == "" || strings.Contains(topic, "/") {
		return bad("name one topic after the brokers: kafka://HOST:PORT/TOPIC")
	}
	c.Topic = topic
	for _, h := range strings.Split(hosts, ",") {
		if _, port, err := net.SplitHostPort(h); err != nil || port == "" {
			return bad("broker %q is not HOST:PORT", h)
		}
		c.Brokers = append(c.Brokers, h)
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return bad("%v", err)
	}
	for k, vs := range q {
		v := vs[len(vs)-1]
		switch k {
		case "compression":
			switch v {
			case "lz4":
				c.Compression = kgo.Lz4Compression()
			case "zstd":
				c.Compression = kgo.ZstdCompression()
			case "snappy":
				c.Compression = kgo.SnappyCompression()
			case "gzip":
				c.Compression = kgo.GzipCompression()
			case "none":
				c.Compression = kgo.NoCompression()
			default:
				return bad("compression %q: want lz4, zstd, snappy, gzip or none", v)
			}
		case "linger", "delivery_timeout":
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				return bad("%s %q is not a duration", k, v)
			}
			if k == "linger" {
				c.Linger = d
			} else {
				c.DeliveryTimeout = d
			}
		case "max_buffered":
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return bad("max_buffered %q is not a positive number", v)
			}
			c.MaxBuffered = n
		case "client_id":
			c.ClientID = v
		case "tls":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return bad("tls %q: want true or false", v)
			}
			c.TLS = c.TLS || b
		case "tls_ca":
			c.TLS, c.TLSCA = true, v
		case "sasl":
			switch v {
			case "plain", "scram-sha-256", "scram-sha-512":
				c.SASL = v
			default:
				return bad("sasl %q: want plain, scram-sha-256 or scram-sha-512", v)
			}
		default:
			return bad("unknown parameter %q (known: compression, linger, max_buffered, delivery_timeout, client_id, tls, tls_ca, sasl)", k)
		}
	}
	return c, nil
}

// NewKafkaSink starts a producer for a kafka:// URL. It does not wait for
// the brokers: an unreachable cluster is reported by Check, not here.
func NewKafkaSink(rawURL string, opts predlog.Options) (*KafkaSink, error) {
	opts.Defaults()
	c, err := ParseKafkaURL(rawURL)
	if err != nil {
		return nil, err
	}
	kopts := []kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.DefaultProduceTopic(c.Topic),
		kgo.ClientID(c.ClientID),
		kgo.ProducerBatchCompression(c.Compression),
		kgo.ProducerLinger(c.Linger),
		kgo.MaxBufferedRecords(c.MaxBuffered),
		kgo.RequiredAcks(kgo.AllISRAcks()),
	}
	if c.DeliveryTimeout > 0 {
		kopts = append(kopts, kgo.RecordDeliveryTimeout(c.DeliveryTimeout))
	}
	if c.TLS {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if c.TLSCA != "" {
			pem, err := os.ReadFile(c.TLSCA)
			if err != nil {
				return nil, fmt.Errorf("kafka tls_ca: %w", err)
			}
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("kafka tls_ca %s: no PEM certificate found", c.TLSCA)
			}
		}
		kopts = append(kopts, kgo.DialTLSConfig(cfg))
	}
	if c.SASL != "" {
		if opts.KafkaUser == "" {
			return nil, fmt.Errorf("kafka sasl=%s needs a user and password (lariat serve: --prediction-log-kafka-user and --prediction-log-kafka-password)", c.SASL)
		}
		switch c.SASL {
		case "plain":
			kopts = append(kopts, kgo.SASL(plain.Auth{User: opts.KafkaUser, Pass: opts.KafkaPassword}.AsMechanism()))
		case "scram-sha-256":
			kopts = append(kopts, kgo.SASL(scram.Auth{User: opts.KafkaUser, Pass: opts.KafkaPassword}.AsSha256Mechanism()))
		case "scram-sha-512":
			kopts = append(kopts, kgo.SASL(scram.Auth{User: opts.KafkaUser, Pass: opts.KafkaPassword}.AsSha512Mechanism()))
		}
	}
	s := &KafkaSink{topic: c.Topic, stall: max(3*opts.FlushInterval, time.Second), maxBuffered: c.MaxBuffered}
	kopts = append(kopts, kgo.WithHooks(s))
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		return nil, fmt.Errorf("cannot start kafka producer: %w", err)
	}
	s.cl = cl
	s.lastOK.Store(time.Now().UnixNano())
	s.pool.New = func() any {
		return &kgo.Record{Headers: []kgo.RecordHeader{{Key: "lariat-schema", Value: []byte(predlog.SchemaVersion)}}}
	}
	return s, nil
}

// burstWait is how long after the last delivery Write still waits for
// room in a full producer buffer: a burst larger than max_buffered waits
// while the brokers take records, and is dropped and counted once they
// have taken none for burstWait (or, before the first delivery, for the
// stall time). It is well below the stall time, so that a stall is
// reported after the records it cost are counted.
const burstWait = 250 * time.Millisecond

// Write encodes and hands the records to the producer. Records the
// producer cannot buffer are dropped and counted, once the brokers stop
// taking records (see burstWait).
func (s *KafkaSink) Write(recs []*predlog.Record) (int, error) {
	for _, r := range recs {
		if !s.waitRoom() {
			// Counted now rather than by the producer's promise, which
			// comes later: a stall is then reported after its losses.
			s.full.Add(1)
			continue
		}
		kr := s.pool.Get().(*kgo.Record)
		kr.Key = append(kr.Key[:0], r.Route...)
		kr.Value = r.AppendJSON(kr.Value[:0])
		kr.Timestamp = r.Time
		s.cl.TryProduce(context.Background(), kr, s.delivered)
	}
	return 0, nil
}

// waitRoom waits while the producer's buffer is full and the brokers
// take records (see burstWait). It reports whether there is room.
func (s *KafkaSink) waitRoom() bool {
	for s.cl.BufferedProduceRecords() >= int64(s.maxBuffered) {
		idle := time.Since(time.Unix(0, s.lastOK.Load()))
		if idle >= burstWait && (s.deliveredOnce.Load() || idle >= s.stall) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// delivered is the producer's promise: it counts failures and frees kr.
func (s *KafkaSink) delivered(kr *kgo.Record, err error) {
	switch {
	case err == nil:
		s.lastOK.Store(time.Now().UnixNano())
		s.deliveredOnce.Store(true)
	case errors.Is(err, kgo.ErrMaxBuffered):
		s.full.Add(1)
	default:
		s.failed.Add(1)
		s.errMu.Lock()
		s.lastErr, s.errAt = err, time.Now()
		s.errMu.Unlock()
	}
	key, val, hdr := kr.Key[:0], kr.Value[:0], kr.Headers
	*kr = kgo.Record{Key: key, Value: val, Headers: hdr}
	s.pool.Put(kr)
}

// Flush does nothing: the producer sends batches on its own.
func (s *KafkaSink) Flush() (int, error) { return 0, nil }

// closeTimeout bounds how long Close waits for buffered records.
var closeTimeout = 10 * time.Second

// Close waits (up to 10s) for buffered records to be delivered, then
// closes the producer; records still buffered are dropped and counted.
func (s *KafkaSink) Close() (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	ferr := s.cl.Flush(ctx)
	s.cl.Close()
	if ferr != nil {
		return 0, fmt.Errorf("kafka: records still buffered at shutdown were dropped: %w", ferr)
	}
	return 0, nil
}

// Check reports a delivery error newer than the last delivery, or records
// waiting while nothing was delivered for the stall time.
func (s *KafkaSink) Check() error {
	last := time.Unix(0, s.lastOK.Load())
	s.errMu.Lock()
	err, at, connErr := s.lastErr, s.errAt, s.connErr
	s.errMu.Unlock()
	if err != nil && at.After(last) {
		return fmt.Errorf("kafka delivery failed: %w", err)
	}
	if n := s.cl.BufferedProduceRecords(); n > 0 && time.Since(last) > s.stall {
		if connErr != nil {
			return fmt.Errorf("kafka: nothing delivered to topic %q for %s, %d records buffered: %w", s.topic, time.Since(last).Round(time.Second), n, connErr)
		}
		return fmt.Errorf("kafka: nothing delivered to topic %q for %s, %d records buffered", s.topic, time.Since(last).Round(time.Second), n)
	}
	return nil
}
