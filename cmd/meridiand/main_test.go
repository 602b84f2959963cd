package main

import (
	"fmt"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/meridian-mesh/meridian/internal/testutil"
)

// TestSIGTERM runs meridiand as the binary does and stops it with a real
// SIGTERM: it exits 0.
func TestSIGTERM(t *testing.T) {
	admin := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"--cluster", "lab1", "--region", "onprem-east", "--data-dir", t.TempDir(),
			"--grpc-addr", "127.0.0.1:0", "--admin-addr", admin, "--log-level", "warn"})
	}()
	// Once /healthz answers, the signal handler is in place.
	testutil.Eventually(t, 30*time.Second, func() error {
		select {
		case code := <-done:
			t.Fatalf("meridiand exited early with %d", code)
		default:
		}
		resp, err := http.Get("http://" + admin + "/healthz")
		if err != nil {
			return err
		}
		return resp.Body.Close()
	})
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit code %d after SIGTERM", code)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("meridiand did not stop within 30s of SIGTERM")
	}
}

func TestBadFlagsExitNonZero(t *testing.T) {
	if code := run([]string{"--cluster", "c"}); code == 0 {
		t.Fatal("a config without a region was accepted")
	}
	if code := run([]string{"--colour", "red"}); code == 0 {
		t.Fatal("an unknown flag was accepted")
	}
}
