package lab

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// module is the Go module whose source the lab builds its binaries from.
const module = "github.com/meridian-mesh/meridian"

// binaries the lab runs (meridianctl to join its clusters, as a user
// would).
var binaries = []string{"meridiand", "meridian-demo", "meridian-proxy", "meridianctl"}

// findBinaries returns the directory holding every binary the lab runs:
// binDir when given; else the directory of the running executable when
// they are all there (make build puts them side by side in bin/); else a
// fresh `go build` into STATE/bin when the working directory is inside
// Meridian's source (go run ./cmd/meridianctl lab up); else $PATH.
func findBinaries(ctx context.Context, binDir, stateDir string, progress func(string)) (string, error) {
	if binDir != "" {
		if missing := missingIn(binDir); len(missing) > 0 {
			return "", fmt.Errorf("lab: --bin-dir %s lacks %s", binDir, strings.Join(missing, ", "))
		}
		return binDir, nil
	}
	if exe, err := os.Executable(); err == nil {
		if dir := filepath.Dir(exe); len(missingIn(dir)) == 0 {
			return dir, nil
		}
	}
	if root := moduleRoot(); root != "" {
		out := filepath.Join(stateDir, "bin")
		progress("building " + strings.Join(binaries, ", ") + " from " + root + " (go build)")
		// As make build and the image build them (grpcnotrace: see the Makefile).
		args := []string{"build", "-trimpath", "-tags=grpcnotrace", "-o", out + string(filepath.Separator)}
		for _, b := range binaries {
			args = append(args, "./cmd/"+b)
		}
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = root
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("lab: go build: %w: %s", err, strings.TrimSpace(stderr.String()))
		}
		return out, nil
	}
	var dir string
	for _, b := range binaries {
		p, err := exec.LookPath(b)
		if err != nil {
			return "", fmt.Errorf("lab: %s not found next to meridianctl, in a Meridian source tree, or in $PATH", b)
		}
		if dir == "" {
			dir = filepath.Dir(p)
		}
	}
	return dir, nil
}

func missingIn(dir string) []string {
	var missing []string
	for _, b := range binaries {
		if st, err := os.Stat(filepath.Join(dir, b)); err != nil || st.IsDir() {
			missing = append(missing, b)
		}
	}
	return missing
}

// moduleRoot returns the root of Meridian's source tree holding the
// working directory, or "".
func moduleRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if f, err := os.Open(filepath.Join(dir, "go.mod")); err == nil {
			sc := bufio.NewScanner(f)
			ok := sc.Scan() && strings.TrimSpace(sc.Text()) == "module "+module
			f.Close()
			if ok {
				return dir
			}
			return ""
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}
