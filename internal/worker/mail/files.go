package mail

import (
	"bufio"
	"errors"
	"io/fs"
	"mime"
	"net/mail"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/globomantics/globomantics/internal/platform/errs"
)

// ext is the file extension of messages written by FileSender.
const ext = ".eml"

// Summary describes one message written by FileSender.
type Summary struct {
	ID      string    `json:"id"`
	From    string    `json:"from"`
	To      string    `json:"to"`
	Subject string    `json:"subject"` // decoded
	Date    time.Time `json:"date"`
	Size    int64     `json:"size"`
}

// ListMessages summarises the messages in dir, newest first. A directory
// that does not exist yet holds no messages. A file whose headers cannot be
// read is listed with its id and size only.
func ListMessages(dir string) ([]Summary, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return []Summary{}, nil
	}
	if err != nil {
		return nil, errs.E("mail.ListMessages", err)
	}
	out := []Summary{}
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ext)
		if !ok || !e.Type().IsRegular() || !ValidMessageID(id) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		s := Summary{ID: id, Size: info.Size()}
		readSummary(filepath.Join(dir, e.Name()), &s)
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Date.Equal(out[j].Date) {
			return out[i].Date.After(out[j].Date)
		}
		return out[i].ID > out[j].ID
	})
	return out, nil
}

// readSummary fills s from the message headers in the file, as far as they
// can be read.
func readSummary(path string, s *Summary) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	m, err := mail.ReadMessage(bufio.NewReader(f))
	if err != nil {
		return
	}
	dec := new(mime.WordDecoder)
	decode := func(v string) string {
		if d, err := dec.DecodeHeader(v); err == nil {
			return d
		}
		return v
	}
	s.From = decode(m.Header.Get("From"))
	s.To = decode(m.Header.Get("To"))
	s.Subject = decode(m.Header.Get("Subject"))
	if d, err := m.Header.Date(); err == nil {
		s.Date = d.UTC()
	}
}

// ReadMessage returns the raw message with the given id from dir.
// errs.BadRequest for an id that cannot name a message (so no path outside
// dir is ever read), errs.NotFound when there is none.
func ReadMessage(dir, id string) ([]byte, error) {
	const op = "mail.ReadMessage"
	if !ValidMessageID(id) {
		return nil, errs.E(op, errs.BadRequest, errs.Msg("invalid message id"))
	}
	b, err := os.ReadFile(filepath.Join(dir, id+ext))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errs.E(op, errs.NotFound, errs.Msg("message not found"))
	}
	if err != nil {
		return nil, errs.E(op, err)
	}
	return b, nil
}
