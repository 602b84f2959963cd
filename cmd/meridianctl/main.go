// Command meridianctl is Meridian's command-line client. The commands live
// in package cli; this is only the process around them.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/meridian-mesh/meridian/cmd/meridianctl/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Execute(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
