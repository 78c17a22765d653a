package gateway

import (
	"context"
	"log/slog"
	"time"
)

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
