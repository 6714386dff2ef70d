package httpserver

import (
	"bytes"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// shedListener caps open connections. A connection over the cap is
// accepted, answered at once with 503 and Retry-After, and closed. (Leaving
// it unaccepted in the kernel's queue, as golang.org/x/net/netutil's
// LimitListener does, made clients hang behind idle keep-alive connections
// until their own timeout: 10 s in the benchmark's open model.)
type shedListener struct {
	net.Listener
	max      int64
	open     atomic.Int64
	shedding atomic.Int64 // goroutines answering shed connections
	shed     atomic.Int64 // connections shed so far
}

// maxShedding bounds the goroutines answering shed connections; beyond it
// a connection is closed without an answer, so a connection flood cannot
// grow memory either.
const maxShedding = 256

var shedBody = []byte(`{"error":"overloaded: too many open connections","retry_after_seconds":1}` + "\n")

var shedResponse = []byte("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: " +
	strconv.Itoa(len(shedBody)) + "\r\n\r\n" + string(shedBody))

func (l *shedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) <= l.max {
			return &countedConn{Conn: c, l: l}, nil
		}
		l.open.Add(-1)
		l.shed.Add(1)
		if l.shedding.Add(1) > maxShedding {
			l.shedding.Add(-1)
			c.Close()
			continue
		}
		go func() {
			defer l.shedding.Add(-1)
			answerShed(c)
		}()
	}
}

// answerShed reads the request head (so that the client, which is still
// writing it, reads an answer rather than a reset), writes the 503 and
// closes. Everything is bounded by one second.
func answerShed(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 4096)
	n := 0
	for n < len(buf) {
		m, err := c.Read(buf[n:])
		n += m
		if err != nil || bytes.Contains(buf[:n], []byte("\r\n\r\n")) {
			break
		}
	}
	if _, err := c.Write(shedResponse); err != nil {
		return
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	for { // let the client finish sending its body and close first
		if _, err := c.Read(buf); err != nil {
			return
		}
	}
}

// countedConn gives its slot back when closed.
type countedConn struct {
	net.Conn
	l    *shedListener
	once sync.Once
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.open.Add(-1) })
	return err
}

// CloseWrite lets net/http half-close the connection as it does a TCP one.
func (c *countedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
