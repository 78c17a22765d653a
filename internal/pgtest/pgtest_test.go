package pgtest

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestStartCreatesUsableDatabases(t *testing.T) {
	s := Start(t)
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		dsn := s.NewDatabase(t)
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatalf("connect %s: %v", dsn, err)
		}
		var one int
		if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
			t.Fatalf("SELECT 1 = %d, %v", one, err)
		}
		// Each database is fresh: a table created in one is absent from the next.
		if _, err := conn.Exec(ctx, "CREATE TABLE t (x int)"); err != nil {
			t.Fatalf("create table in database %d: %v", i, err)
		}
		_ = conn.Close(ctx)
	}
}

func TestStopRemovesEverything(t *testing.T) {
	s, err := start()
	if err != nil {
		t.Fatal(err)
	}
	s.Stop()
	select {
	case <-s.exited:
	default:
		t.Fatal("server still running after Stop")
	}
	if _, err := pgx.Connect(context.Background(), s.dsn("postgres")); err == nil {
		t.Fatal("server still accepts connections after Stop")
	}
}

func TestMissingBinariesMessage(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := findBinDir("", filepath.Join(t.TempDir(), "*", "bin", "initdb"))
	if err == nil || !strings.Contains(err.Error(), "apt-get install -y postgresql") {
		t.Fatalf("want an error telling how to install postgresql, got %v", err)
	}
	if _, err := findBinDir(t.TempDir(), ""); err == nil || !strings.Contains(err.Error(), BinDirEnv) {
		t.Fatalf("want an error naming %s, got %v", BinDirEnv, err)
	}
}
