package testenv

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// SMTPMessage is one message an SMTPServer accepted.
type SMTPMessage struct {
	From string   // the MAIL FROM address, without angle brackets
	To   []string // the RCPT TO addresses, in order
	User string   // the AUTH PLAIN user, "" without authentication
	// Data is the message as the client sent it, after the end-of-data
	// line and with dot-stuffing undone: CRLF line ends kept.
	Data []byte
}

// SMTPServer is a small SMTP server (RFC 5321) for tests: it speaks EHLO and
// HELO, AUTH PLAIN (when SetAuth was called), MAIL FROM, RCPT TO, DATA
// (undoing dot-stuffing), RSET, NOOP and QUIT, on 127.0.0.1, and records
// every message it accepts. It offers no STARTTLS. Replies can be made to
// fail on demand (Fail) with a temporary (4xx) or permanent (5xx) code.
// It is safe for concurrent use and serves any number of sessions at once.
type SMTPServer struct {
	// Addr is host:port of the server.
	Addr string

	ln net.Listener

	mu       sync.Mutex
	msgs     []SMTPMessage
	faults   map[string][]smtpFault // by verb ("MAIL", "RCPT", "DATA" for the end of data, ...)
	user     string
	pass     string
	sessions int
}

type smtpFault struct {
	code  int
	times int // < 0: every time
}

// smtpMaxData bounds a message's size; a larger one is refused with 552.
const smtpMaxData = 10 << 20

// SMTP starts an SMTPServer on a free port of 127.0.0.1; it stops when the
// test ends.
func SMTP(tb testing.TB) *SMTPServer {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &SMTPServer{Addr: ln.Addr().String(), ln: ln, faults: map[string][]smtpFault{}}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.serve(c)
			}()
		}
	}()
	tb.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return s
}

// SetAuth makes the server offer AUTH PLAIN and require it before MAIL:
// the credentials user and pass are accepted (235), any other is refused
// with 535.
func (s *SMTPServer) SetAuth(user, pass string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.user, s.pass = user, pass
}

// Fail makes the server answer the next times uses of verb ("EHLO", "AUTH",
// "MAIL", "RCPT", or "DATA" for the reply after the message's end) with code,
// a 4xx (try again later) or 5xx (refused for good) reply; times < 0 means
// every use from now on. Faults queue up in the order they are set. A DATA
// fault applies after the whole message was read, and the message is not
// recorded.
func (s *SMTPServer) Fail(verb string, code, times int) {
	if code < 400 || code > 599 {
		panic(fmt.Sprintf("testenv.SMTPServer.Fail: %d is no failure code", code))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	verb = strings.ToUpper(verb)
	s.faults[verb] = append(s.faults[verb], smtpFault{code: code, times: times})
}

// fault returns the code to answer verb with now, or 0 to proceed.
func (s *SMTPServer) fault(verb string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.faults[verb]
	if len(q) == 0 {
		return 0
	}
	f := &q[0]
	code := f.code
	if f.times > 0 {
		f.times--
		if f.times == 0 {
			s.faults[verb] = q[1:]
		}
	}
	return code
}

// Messages returns a copy of the messages accepted so far, in the order
// they were accepted.
func (s *SMTPServer) Messages() []SMTPMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]SMTPMessage, len(s.msgs))
	for i, m := range s.msgs {
		m.To = append([]string(nil), m.To...)
		m.Data = bytes.Clone(m.Data)
		out[i] = m
	}
	return out
}

// Sessions is how many connections the server has greeted.
func (s *SMTPServer) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions
}

// WaitMessages waits until the server has accepted at least n messages, for
// at most timeout, and returns them; it fails the test on timeout.
func (s *SMTPServer) WaitMessages(tb testing.TB, n int, timeout time.Duration) []SMTPMessage {
	tb.Helper()
	var msgs []SMTPMessage
	CheckFor(tb, timeout, func() error {
		if msgs = s.Messages(); len(msgs) < n {
			return fmt.Errorf("the SMTP server accepted %d messages, want %d", len(msgs), n)
		}
		return nil
	})
	return msgs
}

// smtpSession is the state of one connection.
type smtpSession struct {
	hello  bool
	authed string // the user, once AUTH succeeded
	from   *string
	to     []string
}

func (s *SMTPServer) serve(nc net.Conn) {
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(time.Minute))
	r := bufio.NewReader(nc)
	w := bufio.NewWriter(nc)
	reply := func(code int, lines ...string) bool {
		for i, l := range lines {
			sep := " "
			if i < len(lines)-1 {
				sep = "-"
			}
			fmt.Fprintf(w, "%d%s%s\r\n", code, sep, l)
		}
		return w.Flush() == nil
	}
	s.mu.Lock()
	s.sessions++
	s.mu.Unlock()
	if !reply(220, "127.0.0.1 ESMTP testenv") {
		return
	}
	var st smtpSession
	for {
		line, err := readSMTPLine(r)
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		verb = strings.ToUpper(verb)
		if verb != "DATA" { // DATA's fault is its reply to the message's end
			if code := s.fault(verb); code != 0 {
				if !reply(code, faultText(code)) {
					return
				}
				continue
			}
		}
		ok := true
		switch verb {
		case "EHLO", "HELO":
			st = smtpSession{hello: true, authed: st.authed}
			if verb == "HELO" {
				ok = reply(250, "127.0.0.1")
				break
			}
			ext := []string{"127.0.0.1 greets " + arg, "8BITMIME", "SMTPUTF8", fmt.Sprintf("SIZE %d", smtpMaxData)}
			if s.authRequired() {
				ext = append(ext, "AUTH PLAIN")
			}
			ok = reply(250, ext...)
		case "AUTH":
			ok = s.auth(r, &st, arg, reply)
		case "MAIL":
			addr, found := pathArg(arg, "FROM:")
			switch {
			case !st.hello:
				ok = reply(503, "5.5.1 EHLO first")
			case s.authRequired() && st.authed == "":
				ok = reply(530, "5.7.0 authentication required")
			case st.from != nil:
				ok = reply(503, "5.5.1 nested MAIL command")
			case !found:
				ok = reply(501, "5.5.4 syntax: MAIL FROM:<address>")
			default:
				st.from = &addr
				ok = reply(250, "2.1.0 sender ok")
			}
		case "RCPT":
			addr, found := pathArg(arg, "TO:")
			switch {
			case st.from == nil:
				ok = reply(503, "5.5.1 MAIL first")
			case !found || addr == "":
				ok = reply(501, "5.5.4 syntax: RCPT TO:<address>")
			default:
				st.to = append(st.to, addr)
				ok = reply(250, "2.1.5 recipient ok")
			}
		case "DATA":
			if st.from == nil || len(st.to) == 0 {
				ok = reply(503, "5.5.1 RCPT first")
				break
			}
			if !reply(354, "end data with <CR><LF>.<CR><LF>") {
				return
			}
			data, tooBig, err := readSMTPData(r)
			if err != nil {
				return
			}
			switch code := s.fault("DATA"); {
			case tooBig:
				ok = reply(552, "5.3.4 message too big")
			case code != 0:
				ok = reply(code, faultText(code))
			default:
				s.mu.Lock()
				s.msgs = append(s.msgs, SMTPMessage{From: *st.from, To: st.to, User: st.authed, Data: data})
				s.mu.Unlock()
				ok = reply(250, "2.0.0 queued")
			}
			st.from, st.to = nil, nil
		case "RSET":
			st.from, st.to = nil, nil
			ok = reply(250, "2.0.0 reset")
		case "NOOP":
			ok = reply(250, "2.0.0 ok")
		case "QUIT":
			reply(221, "2.0.0 bye")
			return
		default:
			ok = reply(502, "5.5.2 command not implemented")
		}
		if !ok {
			return
		}
	}
}

func (s *SMTPServer) authRequired() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.user != ""
}

// auth handles "AUTH PLAIN [initial-response]".
func (s *SMTPServer) auth(r *bufio.Reader, st *smtpSession, arg string, reply func(int, ...string) bool) bool {
	mech, resp, _ := strings.Cut(arg, " ")
	switch {
	case !s.authRequired() || !strings.EqualFold(mech, "PLAIN"):
		return reply(504, "5.5.4 unrecognised authentication type")
	case st.authed != "":
		return reply(503, "5.5.1 already authenticated")
	}
	if resp == "" {
		if !reply(334, "") {
			return false
		}
		line, err := readSMTPLine(r)
		if err != nil {
			return false
		}
		resp = line
	}
	dec, err := base64.StdEncoding.DecodeString(resp)
	if err != nil {
		return reply(501, "5.5.2 cannot decode response")
	}
	parts := strings.Split(string(dec), "\x00")
	s.mu.Lock()
	good := len(parts) == 3 && parts[1] == s.user && parts[2] == s.pass
	s.mu.Unlock()
	if !good {
		return reply(535, "5.7.8 authentication credentials invalid")
	}
	st.authed = parts[1]
	return reply(235, "2.7.0 authenticated")
}

// faultText is the text of an injected failure reply.
func faultText(code int) string {
	if code < 500 {
		return "4.3.0 temporary failure, try again later (injected)"
	}
	return "5.7.1 refused (injected)"
}

// pathArg parses "FROM:<addr> params" (or TO:), returning addr.
func pathArg(arg, prefix string) (string, bool) {
	if len(arg) < len(prefix) || !strings.EqualFold(arg[:len(prefix)], prefix) {
		return "", false
	}
	rest := strings.TrimSpace(arg[len(prefix):])
	if !strings.HasPrefix(rest, "<") {
		return "", false
	}
	end := strings.IndexByte(rest, '>')
	if end < 0 {
		return "", false
	}
	return rest[1:end], true
}

// readSMTPLine reads one command line without its CRLF (a bare LF is
// accepted), bounded to 4 KiB.
func readSMTPLine(r *bufio.Reader) (string, error) {
	var b []byte
	for {
		chunk, isPrefix, err := r.ReadLine()
		if err != nil {
			return "", err
		}
		b = append(b, chunk...)
		if len(b) > 4096 {
			return "", errors.New("smtp: line too long")
		}
		if !isPrefix {
			return string(b), nil
		}
	}
}

// readSMTPData reads a message up to the line holding only ".", undoing
// dot-stuffing (a leading "." doubled by the client) and keeping line ends
// as sent. tooBig when the message exceeded smtpMaxData; it is then read to
// its end and discarded.
func readSMTPData(r *bufio.Reader) (data []byte, tooBig bool, err error) {
	var b bytes.Buffer
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return nil, false, err
		}
		if bytes.Equal(line, []byte(".\r\n")) || bytes.Equal(line, []byte(".\n")) {
			if tooBig {
				return nil, true, nil
			}
			return b.Bytes(), false, nil
		}
		if line[0] == '.' {
			line = line[1:]
		}
		if b.Len()+len(line) > smtpMaxData {
			tooBig = true
			b.Reset()
		}
		if !tooBig {
			b.Write(line)
		}
	}
}
