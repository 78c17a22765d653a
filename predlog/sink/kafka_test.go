package sink

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lariat-gw/lariat/predlog"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/lariat-gw/lariat/internal/testwait"
)

// startKafka runs an in-process Kafka cluster (franz-go's kfake) on
// 127.0.0.1 with the topic, and a switch that makes every broker drop
// its connections while it is on.
func startKafka(t *testing.T, topic string) (*kfake.Cluster, *atomic.Bool) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	var down atomic.Bool
	c.Control(func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if down.Load() {
			return nil, errors.New("broker down"), true
		}
		return nil, nil, false
	})
	return c, &down
}

// consume reads n records of topic, or fails after a bounded wait.
func consume(t *testing.T, c *kfake.Cluster, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var recs []*kgo.Record
	for len(recs) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records", len(recs), n)
		}
		fs.EachRecord(func(r *kgo.Record) { recs = append(recs, r) })
	}
	return recs
}

func TestKafkaURL(t *testing.T) {
	c, err := ParseKafkaURL("kafka://a:9092,b:9093/predictions?compression=zstd&linger=5ms&max_buffered=10&delivery_timeout=1m&client_id=gw1")
	if err != nil || strings.Join(c.Brokers, ",") != "a:9092,b:9093" || c.Topic != "predictions" || c.Linger != 5*time.Millisecond ||
		c.MaxBuffered != 10 || c.DeliveryTimeout != time.Minute || c.ClientID != "gw1" || c.Compression != kgo.ZstdCompression() {
		t.Fatalf("%+v %v", c, err)
	}
	bad := func(u, want string) {
		t.Helper()
		if _, err := ParseKafkaURL(u); err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("%s: got %v, want %q", u, err, want)
		}
	}
	bad("kafka://a:9092", "name one topic")
	bad("kafka://a/t", `broker "a" is not HOST:PORT`)
	bad("kafka://a:1/t?compression=brotli", "compression \"brotli\"")
	bad("kafka://a:1/t?lingr=1ms", `unknown parameter "lingr"`)
	bad("kafka://a:1/t?max_buffered=0", "max_buffered")
	if _, err := Open("redis://x", predlog.Options{}); err == nil || !strings.Contains(err.Error(), "want file:///DIR or kafka://") {
		t.Fatalf("unsupported scheme: %v", err)
	}
}

// TestKafkaSinkProduces sends records of three routes and reads them back:
// one JSON object each with the schema header, keyed by route, a route's
// records in one partition in order.
func TestKafkaSinkProduces(t *testing.T) {
	c, _ := startKafka(t, "predictions")
	l, err := OpenLog("kafka://"+c.ListenAddrs()[0]+"/predictions?linger=1ms", predlog.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 5, 1, 13, 0, 0, 0, time.UTC)
	want := map[string]*predlog.Record{}
	for i := 0; i < 300; i++ {
		r := sampleRecord(fmt.Sprintf("r-%03d", i), now.Add(time.Duration(i)*time.Millisecond))
		r.Route = []string{"a", "b", "c"}[i%3]
		want[r.RequestID] = r
		rec := l.Acquire()
		*rec = *r
		l.Submit(rec)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	recs := consume(t, c, "predictions", 300)
	partOf := map[string]int32{}
	last := map[string]string{}
	for _, kr := range recs {
		var got predlog.Record
		if err := json.Unmarshal(kr.Value, &got); err != nil {
			t.Fatal(err)
		}
		w := want[got.RequestID]
		got.Time, got.Features[0].EventTime = got.Time.UTC(), ptr(got.Features[0].EventTime.UTC())
		if w == nil || !reflect.DeepEqual(&got, w) {
			t.Fatalf("record %s:\n got %+v\nwant %+v", got.RequestID, got, w)
		}
		if string(kr.Key) != got.Route || len(kr.Headers) != 1 || kr.Headers[0].Key != "lariat-schema" || string(kr.Headers[0].Value) != predlog.SchemaVersion {
			t.Fatalf("record %s: key %q headers %+v", got.RequestID, kr.Key, kr.Headers)
		}
		if p, ok := partOf[got.Route]; ok && p != kr.Partition {
			t.Fatalf("route %s in partitions %d and %d", got.Route, p, kr.Partition)
		}
		partOf[got.Route] = kr.Partition
		if got.RequestID < last[got.Route] {
			t.Fatalf("route %s: %s after %s", got.Route, got.RequestID, last[got.Route])
		}
		last[got.Route] = got.RequestID
	}
}

// TestKafkaBrokerDown stops the broker for a while: records are buffered
// up to max_buffered, the rest dropped and counted, the log reports the
// stall, and once the broker is back the buffered records arrive and the
// log is healthy again.
func TestKafkaBrokerDown(t *testing.T) {
	c, down := startKafka(t, "predictions")
	opts := predlog.Options{Logger: quietLogger(), FlushInterval: 50 * time.Millisecond}
	ks, err := NewKafkaSink("kafka://"+c.ListenAddrs()[0]+"/predictions?linger=1ms&max_buffered=50", opts)
	if err != nil {
		t.Fatal(err)
	}
	l := predlog.New(ks, "kafka", opts)
	submit := func(from, n int) {
		for i := from; i < from+n; i++ {
			rec := l.Acquire()
			*rec = *sampleRecord(fmt.Sprintf("r-%03d", i), time.Now())
			l.Submit(rec)
		}
	}
	submit(0, 20)
	testwait.Until(t, "first records delivered", func() bool {
		return l.Status().OK && l.Status().Written >= 20 && ks.cl.BufferedProduceRecords() == 0
	})

	down.Store(true)
	dropped0 := l.Status().Dropped
	submit(20, 200)
	testwait.Until(t, "the stall reported", func() bool { return !l.Status().OK })
	st := l.Status()
	if lost := st.Dropped - dropped0; lost < 150-1 || lost > 200 || !strings.Contains(st.Error, "nothing delivered") {
		t.Fatalf("while down: %+v (%d dropped)", st, lost)
	}

	down.Store(false)
	testwait.Until(t, "recovery", func() bool { return l.Status().OK })
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	lost := int(l.Status().Dropped - dropped0)
	recs := consume(t, c, "predictions", 220-lost)
	if len(recs) != 220-lost {
		t.Fatalf("consumed %d records, want %d (%d dropped)", len(recs), 220-lost, lost)
	}
}

// TestKafkaBurstWaitsForRoom writes a batch four times max_buffered to a
// broker that is up: every record is delivered, none dropped.
func TestKafkaBurstWaitsForRoom(t *testing.T) {
	c, _ := startKafka(t, "predictions")
	s, err := NewKafkaSink("kafka://"+c.ListenAddrs()[0]+"/predictions?linger=5ms&max_buffered=50", predlog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	batch := make([]*predlog.Record, 200)
	for i := range batch {
		batch[i] = sampleRecord(fmt.Sprintf("r-%03d", i), time.Now())
	}
	if lost, err := s.Write(batch); lost != 0 || err != nil {
		t.Fatalf("Write: %d lost, %v", lost, err)
	}
	if lost, err := s.Close(); lost != 0 || err != nil {
		t.Fatalf("Close: %d lost, %v", lost, err)
	}
	if full, failed := s.TakeDrops(); full != 0 || failed != 0 {
		t.Fatalf("dropped %d (buffer full) and %d (failed)", full, failed)
	}
	if recs := consume(t, c, "predictions", 200); len(recs) != 200 {
		t.Fatalf("consumed %d records", len(recs))
	}
}

// selfSigned returns a TLS certificate for 127.0.0.1 and its PEM.
func selfSigned(t *testing.T) (tls.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kfake"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(crand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	cert, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatal(err)
	}
	return cert, certPEM
}

// TestKafkaTLSAndSASL produces over TLS (a CA given in tls_ca) with
// SCRAM-SHA-256 credentials; wrong credentials show as a sink error.
func TestKafkaTLSAndSASL(t *testing.T) {
	cert, caPEM := selfSigned(t)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "predictions"),
		kfake.TLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}),
		kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "gw", "s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	url := "kafka://" + c.ListenAddrs()[0] + "/predictions?linger=1ms&sasl=scram-sha-256&tls_ca=" + ca
	if _, err := Open(url, predlog.Options{Logger: quietLogger()}); err == nil || !strings.Contains(err.Error(), "needs a user and password") {
		t.Fatalf("sasl without credentials: %v", err)
	}
	l, err := OpenLog(url, predlog.Options{Logger: quietLogger(), KafkaUser: "gw", KafkaPassword: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		r := l.Acquire()
		*r = *sampleRecord(fmt.Sprintf("r-%d", i), time.Now())
		l.Submit(r)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics("predictions"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DialTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}),
		kgo.SASL(scram.Auth{User: "gw", Pass: "s3cret"}.AsSha256Mechanism()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := 0
	for n < 10 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of 10 records", n)
		}
		n += fs.NumRecords()
	}

	// A wrong password: nothing is delivered, the log says so.
	l, err = OpenLog(url, predlog.Options{Logger: quietLogger(), FlushInterval: 50 * time.Millisecond, KafkaUser: "gw", KafkaPassword: "wrong"})
	if err != nil {
		t.Fatal(err)
	}
	r := l.Acquire()
	*r = *sampleRecord("r-x", time.Now())
	l.Submit(r)
	testwait.Until(t, "the failure reported", func() bool { return !l.Status().OK })
	// kfake closes the connection on a failed authentication: the error
	// is that of the last connection attempt.
	if st := l.Status(); !strings.Contains(st.Error, "nothing delivered") || !strings.Contains(st.Error, "buffered: ") {
		t.Fatalf("with a wrong password: %+v", st)
	}
	closeTimeout = 100 * time.Millisecond
	defer func() { closeTimeout = 10 * time.Second }()
	if err := l.Close(); err == nil || !strings.Contains(err.Error(), "records still buffered at shutdown were dropped") {
		t.Fatalf("close with undelivered records: %v", err)
	}
}
