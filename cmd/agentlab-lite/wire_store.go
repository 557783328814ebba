package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/agentlab-sdk/agentlab/store"
)

// openStore opens (creating on first use) the SQLite store the config
// names; several CLI processes share it.
func openStore(ctx context.Context, cfg *config, log *slog.Logger) (*store.SQLite, error) {
	if err := os.MkdirAll(filepath.Dir(cfg.Database), 0o700); err != nil {
		return nil, fmt.Errorf("create database directory: %w", err)
	}
	st, err := store.Open(ctx, cfg.Database, &store.Options{Logger: log})
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", cfg.Database, err)
	}
	return st, nil
}
