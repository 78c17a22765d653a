package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/lariat-gw/lariat/featurefetch"
	"github.com/lariat-gw/lariat/tasks"
	"github.com/lariat-gw/lariat/upstream"
)

// featureFlags configure the online feature store of feature tasks.
type featureFlags struct {
	views          string
	redis          string
	password       string
	cluster        bool
	sentinelMaster string
	tlsOn          bool
	seed           string
	breaker        breakerFlags
}

func (f *featureFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.views, "feature-views", "", "feature-view definitions (YAML) for feature tasks and /get-online-features")
	fs.StringVar(&f.redis, "redis", "", "online store: host:port[,host:port...] or a redis:// URL")
	fs.StringVar(&f.password, "redis-password", "", "Redis password")
	fs.BoolVar(&f.cluster, "redis-cluster", false, "the --redis addresses are Redis Cluster seed nodes")
	fs.StringVar(&f.sentinelMaster, "redis-sentinel-master", "", "master set name: the --redis addresses are Sentinels")
	fs.BoolVar(&f.tlsOn, "redis-tls", false, "connect to Redis with TLS")
	fs.UintVar(&f.breaker.failures, "feature-breaker-failures", uint(tasks.DefaultStoreBreaker.Failures), "consecutive feature-store faults that open its breaker")
	fs.DurationVar(&f.breaker.openFor, "feature-breaker-open-for", tasks.DefaultStoreBreaker.OpenFor, "how long the feature store's open breaker waits before a trial read")
	fs.StringVar(&f.seed, "feature-seed", "", "serve features from memory, seeded from this JSON-lines file, instead of Redis")
}

// env returns the feature environment, or nil when no store is configured.
func (f *featureFlags) env(log *slog.Logger) (*tasks.FeatureEnv, func(), error) {
	if f.views == "" {
		if f.redis != "" || f.seed != "" {
			return nil, nil, fmt.Errorf("--redis and --feature-seed need --feature-views")
		}
		return nil, func() {}, nil
	}
	views, err := featurefetch.LoadViews(f.views)
	if err != nil {
		return nil, nil, err
	}
	switch {
	case f.seed != "" && f.redis != "":
		return nil, nil, fmt.Errorf("give either --redis or --feature-seed, not both")
	case f.seed != "":
		data, err := os.ReadFile(f.seed)
		if err != nil {
			return nil, nil, fmt.Errorf("cannot read --feature-seed: %w", err)
		}
		s := featurefetch.NewMemoryStore()
		if _, err := views.Seed(context.Background(), s, "", data); err != nil {
			return nil, nil, fmt.Errorf("cannot seed features from %s: %w", f.seed, err)
		}
		return &tasks.FeatureEnv{Views: views, Store: s}, func() {}, nil
	case f.redis == "":
		return nil, nil, fmt.Errorf("--feature-views needs a store: --redis ADDR or --feature-seed FILE")
	}
	var opt featurefetch.RedisOptions
	if strings.Contains(f.redis, "://") {
		if opt, err = featurefetch.ParseRedisURL(f.redis); err != nil {
			return nil, nil, err
		}
	} else {
		opt.Addrs = strings.Split(f.redis, ",")
	}
	if f.password != "" {
		opt.Password = f.password
	}
	opt.Cluster = opt.Cluster || f.cluster
	if f.sentinelMaster != "" {
		opt.SentinelMaster = f.sentinelMaster
	}
	if f.tlsOn && opt.TLS == nil {
		opt.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	opt.ClientName = "lariat"
	opt.DialTimeout = 3 * time.Second
	name := "redis://" + strings.Join(opt.Addrs, ",")
	// The gateway serves while Redis is down (only feature reads fail),
	// so that it can start before Redis answers.
	store, err := featurefetch.DialRedisStore(opt, time.Second, func() { log.Info("feature store connected", "redis", name) })
	if err != nil {
		return nil, nil, fmt.Errorf("--redis %s: %w", f.redis, err)
	}
	if !store.Connected() {
		log.Warn("feature store not reachable; serving, and feature reads fail until it answers (tried every second)", "redis", name)
	}
	return &tasks.FeatureEnv{Views: views, Store: store, Name: name, Breaker: f.breakerSettings()}, store.Close, nil
}

func (f *featureFlags) breakerSettings() upstream.BreakerSettings {
	return upstream.BreakerSettings{Failures: uint32(f.breaker.failures), OpenFor: f.breaker.openFor}
}
