package sink

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/lariat-gw/lariat/predlog"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress/snappy"
)

// FileSink writes records as Parquet files under a folder, partitioned by
// route and hour (UTC) in the Hive layout:
//
//	DIR/route=<route>/hour=<2006-01-02T15>/part-<time>-<host>-<pid>-<seq>.parquet
//
// A file is written under a hidden temporary name (.part-...parquet.tmp)
// and renamed when complete, so readers never see half a file. Files are
// completed at every flush interval, when they reach the size limit and
// on Close; a crash loses at most the rows of the files still open.
// Temporary files left by a crash are removed when a sink next opens the
// folder.
type FileSink struct {
	dir     string
	maxSize int64
	prefix  string
	seq     int
	files   map[partKey]*openFile
	touched []*openFile
	lastErr error
	// idle writers are reused for new files: their column buffers keep
	// their capacity, so a file costs no regrowth.
	idle []*parquet.GenericWriter[predlog.Record]
}

type partKey struct {
	route string
	hour  int64
}

type openFile struct {
	key        partKey
	f          *os.File
	w          *parquet.GenericWriter[predlog.Record]
	tmp, final string
	rows       []predlog.Record
	n          int
	size       int64
}

const (
	tmpPrefix = ".part-"
	tmpSuffix = ".tmp"
)

// NewFileSink opens the folder of a file:///DIR URL, creating it if
// needed, and removes the temporary files a crashed writer left behind:
// those of a process of this host that no longer runs, and any not
// modified for a minute and two flush intervals.
func NewFileSink(rawURL string, opts predlog.Options) (*FileSink, error) {
	opts.Defaults()
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "file" || (u.Host != "" && u.Host != "localhost") || !strings.HasPrefix(u.Path, "/") {
		return nil, fmt.Errorf("invalid prediction log URL %q: want file:///ABSOLUTE/DIR", rawURL)
	}
	dir := filepath.Clean(u.Path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cannot create prediction log folder: %w", err)
	}
	host, _ := os.Hostname()
	host = strings.Map(func(r rune) rune {
		if r == '-' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
			return r
		}
		return '_'
	}, host)
	if host == "" {
		host = "host"
	}
	s := &FileSink{
		dir:     dir,
		maxSize: opts.MaxFileSize,
		prefix:  host + "-" + strconv.Itoa(os.Getpid()),
		files:   map[partKey]*openFile{},
	}
	removeStaleTemp(dir, host, time.Now().Add(-time.Minute-2*opts.FlushInterval))
	return s, nil
}

// removeStaleTemp removes the temporary files of dead processes of host
// and those not modified since before.
func removeStaleTemp(dir, host string, before time.Time) {
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		name := d.Name()
		if !strings.HasPrefix(name, tmpPrefix) || !strings.HasSuffix(name, tmpSuffix) {
			return nil
		}
		if pid, ok := tempOwner(name, host); ok && !processRuns(pid) {
			_ = os.Remove(p)
			return nil
		}
		if info, err := d.Info(); err == nil && info.ModTime().Before(before) {
			_ = os.Remove(p)
		}
		return nil
	})
}

// tempOwner returns the pid in a temporary file name written on host:
// .part-<time>-<host>-<pid>-<seq>.parquet.tmp.
func tempOwner(name, host string) (int, bool) {
	rest := strings.TrimSuffix(strings.TrimPrefix(name, tmpPrefix), ".parquet"+tmpSuffix)
	_, rest, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	rest, ok = strings.CutPrefix(rest, host+"-")
	if !ok {
		return 0, false
	}
	pidStr, _, ok := strings.Cut(rest, "-")
	pid, err := strconv.Atoi(pidStr)
	if !ok || err != nil || pid <= 0 {
		return 0, false
	}
	return pid, true
}

// Dir returns the sink's folder.
func (s *FileSink) Dir() string { return s.dir }

// Write adds the records to the open file of their partition.
func (s *FileSink) Write(recs []*predlog.Record) (int, error) {
	lost := 0
	var firstErr error
	for _, r := range recs {
		key := partKey{route: r.Route, hour: r.Time.Unix() / 3600}
		of := s.files[key]
		if of == nil {
			var err error
			if of, err = s.open(key); err != nil {
				lost++
				if firstErr == nil {
					firstErr = err
				}
				continue
			}
			s.files[key] = of
		}
		if len(of.rows) == 0 {
			s.touched = append(s.touched, of)
		}
		of.rows = append(of.rows, *r)
		of.size += recordSize(r)
	}
	for _, of := range s.touched {
		_, err := of.w.Write(of.rows)
		of.n += len(of.rows)
		clear(of.rows)
		of.rows = of.rows[:0]
		if err != nil {
			l, ferr := s.fail(of, err)
			lost += l
			if firstErr == nil {
				firstErr = ferr
			}
			continue
		}
		if of.size >= s.maxSize {
			l, err := s.finish(of)
			lost += l
			if err != nil && firstErr == nil {
				firstErr = err
			}
		}
	}
	clear(s.touched)
	s.touched = s.touched[:0]
	if firstErr != nil {
		s.lastErr = firstErr
	}
	return lost, firstErr
}

func (s *FileSink) open(key partKey) (*openFile, error) {
	hour := time.Unix(key.hour*3600, 0).UTC()
	route := key.route
	if route == "" || strings.HasPrefix(route, ".") {
		route = "_" + route
	}
	dir := filepath.Join(s.dir, "route="+url.PathEscape(route), "hour="+hour.Format("2006-01-02T15"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cannot create partition folder: %w", err)
	}
	s.seq++
	name := "part-" + time.Now().UTC().Format("20060102T150405.000") + "-" + s.prefix + "-" + strconv.Itoa(s.seq) + ".parquet"
	tmp := filepath.Join(dir, tmpPrefix+strings.TrimPrefix(name, "part-")+tmpSuffix)
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cannot create prediction log file: %w", err)
	}
	var w *parquet.GenericWriter[predlog.Record]
	if n := len(s.idle); n > 0 {
		w, s.idle = s.idle[n-1], s.idle[:n-1]
		w.Reset(f)
	} else {
		w = parquet.NewGenericWriter[predlog.Record](f,
			parquet.Compression(&snappy.Codec{}),
			parquet.KeyValueMetadata("lariat.schema", predlog.SchemaVersion),
		)
	}
	return &openFile{key: key, f: f, w: w, tmp: tmp, final: filepath.Join(dir, name)}, nil
}

// finish completes a file: footer, sync, close, rename.
func (s *FileSink) finish(of *openFile) (int, error) {
	delete(s.files, of.key)
	if err := of.w.Close(); err != nil {
		return s.fail(of, err)
	}
	s.idle = append(s.idle, of.w)
	if err := of.f.Sync(); err != nil {
		return s.fail(of, err)
	}
	if err := of.f.Close(); err != nil {
		of.f = nil
		return s.fail(of, err)
	}
	if err := os.Rename(of.tmp, of.final); err != nil {
		of.f = nil
		return s.fail(of, err)
	}
	return 0, nil
}

// fail drops a file that could not be written and returns its row count.
func (s *FileSink) fail(of *openFile, err error) (int, error) {
	delete(s.files, of.key)
	if of.f != nil {
		_ = of.f.Close()
	}
	_ = os.Remove(of.tmp)
	return of.n, fmt.Errorf("cannot write prediction log file %s: %w", of.final, err)
}

// Flush completes every open file.
func (s *FileSink) Flush() (int, error) {
	lost := 0
	var errs []error
	wrote := false
	for _, of := range s.files {
		l, err := s.finish(of)
		lost += l
		if err != nil {
			errs = append(errs, err)
		} else {
			wrote = true
		}
	}
	err := errors.Join(errs...)
	switch {
	case err != nil:
		s.lastErr = err
	case wrote:
		s.lastErr = nil
	}
	return lost, err
}

// Close completes every open file.
func (s *FileSink) Close() (int, error) { return s.Flush() }

// Check returns the last write error until a file is written again.
func (s *FileSink) Check() error { return s.lastErr }

// recordSize estimates the bytes a record adds to a file, before compression.
func recordSize(r *predlog.Record) int64 {
	n := 64 + len(r.RequestID) + len(r.Route) + len(r.RouteVersion) + len(r.Error) + len(r.Request)
	for i := range r.Arms {
		n += len(r.Arms[i].Gate) + len(r.Arms[i].Arm) + 8
	}
	for i := range r.Tasks {
		t := &r.Tasks[i]
		n += len(t.Name) + len(t.Kind) + len(t.Model) + len(t.Version) + len(t.Status) + len(t.Error) + 32
	}
	for i := range r.Features {
		f := &r.Features[i]
		n += len(f.Task) + len(f.Entity) + len(f.View) + len(f.Name) + len(f.Value) + len(f.Status) + 16
	}
	for i := range r.Outputs {
		n += len(r.Outputs[i].Path) + len(r.Outputs[i].Value) + 8
	}
	return int64(n)
}
