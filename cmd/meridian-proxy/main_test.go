package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestCommandLine: help, stray arguments and unknown flags, without a
// command framework.
func TestCommandLine(t *testing.T) {
	for _, tc := range []struct {
		args             []string
		code             int
		stdout, stderr   string
		notOut, notError string
	}{
		{args: []string{"--help"}, code: 0, stdout: "--xds-address", notError: "meridian-proxy:"},
		{args: []string{"-h"}, code: 0, stdout: "Examples:"},
		{args: []string{"serve"}, code: 1, stderr: `unexpected arguments ["serve"]`, notOut: "Flags:"},
		{args: []string{"--no-such-flag"}, code: 1, stderr: "unknown flag: --no-such-flag"},
		{args: []string{"--mode=nonsense", "--xds-address=127.0.0.1:1"}, code: 1, stderr: "nonsense"},
	} {
		var out, errb bytes.Buffer
		code := run(tc.args, &out, &errb)
		if code != tc.code {
			t.Errorf("%v: exit %d, want %d (stderr %q)", tc.args, code, tc.code, errb.String())
		}
		if !strings.Contains(out.String(), tc.stdout) || !strings.Contains(errb.String(), tc.stderr) {
			t.Errorf("%v: stdout %q, stderr %q; want %q and %q in them", tc.args, out.String(), errb.String(), tc.stdout, tc.stderr)
		}
		if (tc.notOut != "" && strings.Contains(out.String(), tc.notOut)) || (tc.notError != "" && strings.Contains(errb.String(), tc.notError)) {
			t.Errorf("%v: stdout %q, stderr %q", tc.args, out.String(), errb.String())
		}
	}
}
