package sshtest

import (
	"context"
	"io"
	"net"
	"strconv"
	"sync"

	"golang.org/x/crypto/ssh"
)

// directTCPIP is the payload of a "direct-tcpip" channel open (RFC 4254
// section 7.2).
type directTCPIP struct {
	Host     string
	Port     uint32
	OrigHost string
	OrigPort uint32
}

// handleDirectTCPIP dials the requested address through Config.Dial and
// copies bytes both ways until either side closes. ctx ends with the SSH
// connection.
func (s *Server) handleDirectTCPIP(ctx context.Context, nc ssh.NewChannel) {
	if s.cfg.Dial == nil {
		_ = nc.Reject(ssh.Prohibited, "port forwarding is disabled")
		return
	}
	var p directTCPIP
	if err := ssh.Unmarshal(nc.ExtraData(), &p); err != nil {
		_ = nc.Reject(ssh.ConnectionFailed, "malformed direct-tcpip request")
		return
	}
	addr := net.JoinHostPort(p.Host, strconv.Itoa(int(p.Port)))
	conn, err := s.cfg.Dial(ctx, "tcp", addr)
	if err != nil {
		s.log.Debug("direct-tcpip dial", "addr", addr, "err", err)
		_ = nc.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		conn.Close()
		return
	}
	go ssh.DiscardRequests(reqs)
	splice(ctx, ch, conn)
}

// splice copies between ch and conn until both directions end or ctx ends,
// then closes both.
func splice(ctx context.Context, ch ssh.Channel, conn net.Conn) {
	stop := context.AfterFunc(ctx, func() { ch.Close(); conn.Close() })
	defer stop()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(conn, ch)
		closeWrite(conn)
	}()
	go func() {
		defer wg.Done()
		_, _ = io.Copy(ch, conn)
		_ = ch.CloseWrite()
	}()
	wg.Wait()
	ch.Close()
	conn.Close()
}

// closeWrite half-closes conn when it supports it, else closes it.
func closeWrite(conn net.Conn) {
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		return
	}
	conn.Close()
}
