package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/fsnotify/fsnotify"

	"github.com/lariat-gw/lariat/config"
	"github.com/lariat-gw/lariat/router"
)

// ReloadResult reports one reload of the routes folder.
type ReloadResult struct {
	// OK is set when every route file loaded.
	OK bool `json:"ok"`
	// Routes counts the routes serving after the reload.
	Routes int `json:"routes"`
	// Changed lists the files read anew.
	Changed []string `json:"changed"`
	// Kept lists broken files still serving their last good version.
	Kept []string `json:"kept_last_good"`
	// Errors lists every problem as file:line:col: message.
	Errors []string `json:"errors"`
	// Warnings lists, as file:line:col: message, the problems that do not
	// stop a route from serving.
	Warnings []string `json:"warnings"`
	// Duration is how long the reload took.
	Duration string `json:"duration"`
}

var (
	reloadsOK     = metrics.NewCounter(`lariat_config_reloads_total{result="success"}`)
	reloadsFailed = metrics.NewCounter(`lariat_config_reloads_total{result="failure"}`)
	reloadTime    = metrics.NewGauge(`lariat_config_last_reload_success_timestamp_seconds`, nil)
)

// Reload reads the routes folder again: unchanged files are skipped,
// changed ones recompiled; a file that fails keeps serving its last good
// version; then the new table is swapped in atomically. Requests in flight
// finish on the routes they started with. Reloads are serialized.
//
// Tenant folders (sub-folders with a tenant.yaml) are read with the rest;
// see ReloadTenant to reload one alone.
func (g *Gateway) Reload() ReloadResult {
	return g.reload("")
}

// ReloadTenant reloads the folder of tenant name only; every other file
// keeps serving as it is, unread. The result lists the tenant's files
// only.
func (g *Gateway) ReloadTenant(name string) ReloadResult {
	return g.reload(name)
}

func (g *Gateway) reload(tenant string) ReloadResult {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	start := time.Now()
	res := ReloadResult{Changed: []string{}, Kept: []string{}, Errors: []string{}, Warnings: []string{}}
	lay, err := config.ReadLayout(g.opts.RoutesDir)
	if err != nil {
		// The folder itself is unreadable: keep serving what we have.
		res.Errors = append(res.Errors, fmt.Sprintf("%s: %v", g.opts.RoutesDir, err))
		reloadsFailed.Inc()
		reloadOK.Set(0)
		g.log.Error("routes folder unreadable; keeping the routes in service", "dir", g.opts.RoutesDir, "error", err)
		res.Routes = len(g.table.Load().Plans())
		res.Duration = time.Since(start).String()
		return res
	}
	g.tenantDirs = g.tenantDirs[:0]
	for _, td := range lay.Tenants {
		g.tenantDirs = append(g.tenantDirs, td.Dir)
	}
	var t *router.Table
	var lr router.LoadResult
	if tenant == "" {
		t, lr = g.loader.LoadLayout(lay)
	} else {
		t, lr = g.loader.ReloadTenant(lay, tenant)
		lr = onlyTenant(lr, lay, tenant)
	}
	g.SetTable(t)
	for _, e := range lr.Errors.Sorted() {
		res.Errors = append(res.Errors, e.Error())
		fileErrors(g.opts.RoutesDir, e.Pos.File).Inc()
		g.log.Error("route file rejected", "error", e.Error())
	}
	for _, w := range lr.Warnings.Sorted() {
		res.Warnings = append(res.Warnings, w.Error())
		if len(lr.Changed) > 0 {
			g.log.Warn("route file", "warning", w.Error())
		}
	}
	res.Changed = append(res.Changed, lr.Changed...)
	res.Kept = append(res.Kept, lr.Kept...)
	res.OK = len(lr.Errors) == 0
	res.Routes = len(t.Plans())
	res.Duration = time.Since(start).Round(time.Microsecond).String()
	if res.OK {
		reloadsOK.Inc()
		reloadTime.Set(float64(time.Now().Unix()))
	} else {
		reloadsFailed.Inc()
	}
	if len(lr.Changed) > 0 || !res.OK {
		g.log.Info("routes loaded", "dir", g.opts.RoutesDir, "routes", res.Routes, "changed", len(lr.Changed), "errors", len(lr.Errors), "kept_last_good", len(lr.Kept), "duration", res.Duration)
	}
	return res
}

// onlyTenant keeps what lr says of the files of tenant's folder.
func onlyTenant(lr router.LoadResult, lay config.Layout, tenant string) router.LoadResult {
	dir := ""
	for _, td := range lay.Tenants {
		if td.Name == tenant {
			dir = td.Dir + string(filepath.Separator)
		}
	}
	in := func(f string) bool { return dir != "" && strings.HasPrefix(f, dir) }
	var out router.LoadResult
	for _, f := range lr.Changed {
		if in(f) {
			out.Changed = append(out.Changed, f)
		}
	}
	for _, f := range lr.Kept {
		if in(f) {
			out.Kept = append(out.Kept, f)
		}
	}
	for _, e := range lr.Errors {
		if in(e.Pos.File) {
			out.Errors = append(out.Errors, e)
		}
	}
	for _, e := range lr.Warnings {
		if in(e.Pos.File) {
			out.Warnings = append(out.Warnings, e)
		}
	}
	return out
}

// fileErrors counts the problems of file, labelled with its path in the
// routes folder (tenant/file.yaml for a tenant's).
func fileErrors(dir, file string) *metrics.Counter {
	name := filepath.Base(file)
	if rel, err := filepath.Rel(dir, file); err == nil && !strings.HasPrefix(rel, "..") {
		name = filepath.ToSlash(rel)
	}
	return metrics.GetOrCreateCounter(fmt.Sprintf(`lariat_config_file_errors_total{file=%q}`, name))
}

// watchTenants adds the tenant folders to w, so a file edited in place
// there is seen too (a Kubernetes projected volume swaps one ..data link
// at the top, which the top folder's watch sees).
func (g *Gateway) watchTenants(w *fsnotify.Watcher) {
	g.reloadMu.Lock()
	dirs := slices.Clone(g.tenantDirs)
	g.reloadMu.Unlock()
	watched := w.WatchList()
	for _, d := range dirs {
		if !slices.Contains(watched, d) {
			if err := w.Add(d); err != nil {
				g.log.Error("watching tenant folder", "dir", d, "error", err)
			}
		}
	}
}

// Watch reloads the routes when the folder changes, until ctx ends. It
// watches the folder itself, so editors that save by renaming and
// Kubernetes ConfigMap volumes (which swap a ..data symlink) are seen.
// Bursts of events are coalesced; a change serves within about 100ms.
func (g *Gateway) Watch(ctx context.Context) error {
	w, err := g.watchFolder()
	if err != nil {
		return err
	}
	defer w.Close()
	watchLoop(ctx, w.Events, w.Errors, func() { g.Reload(); g.watchTenants(w) }, g.log)
	return nil
}

// watchFolder starts watching the routes folder: events from then on
// are in the watcher's channels.
func (g *Gateway) watchFolder() (*fsnotify.Watcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("cannot watch routes folder: %w", err)
	}
	if err := w.Add(g.opts.RoutesDir); err != nil {
		w.Close()
		return nil, fmt.Errorf("cannot watch routes folder %s: %w", g.opts.RoutesDir, err)
	}
	g.watchTenants(w)
	return w, nil
}

// Watch timing: a reload waits for a burst of events to settle, and a
// periodic one catches changes whose events were missed (for example a
// folder replaced wholesale).
const (
	watchSettle = 100 * time.Millisecond
	watchPeriod = 10 * time.Second
)

// watchLoop calls reload watchSettle after the last of a burst of folder
// events or errors, and every watchPeriod, until ctx ends or the channels
// close.
func watchLoop(ctx context.Context, events <-chan fsnotify.Event, errs <-chan error, reload func(), log *slog.Logger) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	tick := time.NewTicker(watchPeriod)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			if ev.Op == fsnotify.Chmod {
				continue
			}
			timer.Reset(watchSettle)
		case err, ok := <-errs:
			if !ok {
				return
			}
			log.Error("watching routes folder", "error", err)
			timer.Reset(watchSettle)
		case <-timer.C:
			reload()
		case <-tick.C:
			reload()
		}
	}
}
