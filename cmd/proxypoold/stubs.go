package main

import (
	"context"
	"errors"
)

func runGateway(ctx context.Context, g *globals, args []string) error {
	return errors.New("not wired yet")
}

func runTorgen(ctx context.Context, g *globals, args []string) error {
	return errors.New("not wired yet")
}

func runAll(ctx context.Context, g *globals, args []string) error {
	return errors.New("not wired yet")
}
