package gateway

import (
	"os"
	"testing"

	"github.com/lariat-gw/lariat/internal/predlogtest"
)

func TestMain(m *testing.M) {
	predlogtest.Main()
	os.Exit(m.Run())
}
