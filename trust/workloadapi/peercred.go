package workloadapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"

	"google.golang.org/grpc/credentials"
)

// Caller is a local process on the other end of the socket, as the kernel
// reports it (SO_PEERCRED): who it ran as when it connected.
type Caller struct {
	PID int32
	UID uint32
	GID uint32
}

// Exe is the caller's executable, read from /proc/PID/exe. A PID can be
// reused after the caller exits; the answer is only as current as the
// process still being alive.
func (c Caller) Exe() (string, error) {
	p, err := os.Readlink("/proc/" + strconv.Itoa(int(c.PID)) + "/exe")
	if err != nil {
		return "", fmt.Errorf("workloadapi: executable of pid %d: %w", c.PID, err)
	}
	return p, nil
}

// authInfo carries the Caller through gRPC's peer information.
type authInfo struct {
	credentials.CommonAuthInfo
	caller Caller
}

func (authInfo) AuthType() string { return "peercred" }

// peerCreds is a gRPC transport credential for Unix sockets that reads the
// connecting process's credentials and passes the connection through
// unchanged: the socket is local, encryption would add nothing.
type peerCreds struct{}

func (peerCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return nil, nil, fmt.Errorf("workloadapi: %T is not a Unix socket", conn)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, nil, fmt.Errorf("workloadapi: peer credentials: %w", err)
	}
	var cred *syscall.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return nil, nil, fmt.Errorf("workloadapi: peer credentials: %w", err)
	}
	if credErr != nil {
		return nil, nil, fmt.Errorf("workloadapi: peer credentials: %w", credErr)
	}
	return conn, authInfo{
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.NoSecurity},
		caller:         Caller{PID: cred.Pid, UID: cred.Uid, GID: cred.Gid},
	}, nil
}

func (peerCreds) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("workloadapi: peer credentials are server-side only")
}

func (peerCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "peercred"}
}

func (p peerCreds) Clone() credentials.TransportCredentials { return p }

func (peerCreds) OverrideServerName(string) error { return nil }
