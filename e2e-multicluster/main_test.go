package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// bins holds the binaries the lab runs, built once by TestMain.
var bins string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "meridian-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bins = dir
	cmd := exec.Command("go", "build", "-o", dir+string(filepath.Separator), "./cmd/meridiand", "./cmd/meridian-demo", "./cmd/meridian-proxy", "./cmd/meridianctl")
	cmd.Dir = ".."
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building the binaries:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	stopMesh(code != 0)
	os.RemoveAll(dir)
	os.Exit(code)
}
