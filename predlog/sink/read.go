package sink

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/lariat-gw/lariat/predlog"
	"github.com/parquet-go/parquet-go"
)

// Files lists the complete Parquet files of a prediction log folder (or
// the file itself when path is a file), sorted; temporary files are left
// out.
func Files(path string) ([]string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read prediction log: %w", err)
	}
	if !st.IsDir() {
		return []string{path}, nil
	}
	var files []string
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(d.Name(), ".parquet") && !strings.HasPrefix(d.Name(), ".") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cannot list prediction log files: %w", err)
	}
	slices.Sort(files)
	return files, nil
}

// ReadFile calls fn for each record of one Parquet file of the log. The
// record is reused between calls.
func ReadFile(path string, fn func(r *predlog.Record) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("cannot read prediction log file: %w", err)
	}
	defer f.Close()
	rd := parquet.NewGenericReader[predlog.Record](f)
	defer rd.Close()
	buf := make([]predlog.Record, 64)
	for {
		n, err := rd.Read(buf)
		for i := 0; i < n; i++ {
			if ferr := fn(&buf[i]); ferr != nil {
				return ferr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("cannot read prediction log file %s: %w", path, err)
		}
	}
}

// Read calls fn for each record of every complete file under path.
func Read(path string, fn func(r *predlog.Record) error) error {
	files, err := Files(path)
	if err != nil {
		return err
	}
	for _, f := range files {
		if err := ReadFile(f, fn); err != nil {
			return err
		}
	}
	return nil
}
