package client

import (
	"bytes"
	"crypto/sha256"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestUploadPartsVectored uploads a body of many parts, over plain HTTP
// and over TLS: the server gets the parts back to back, byte-exact, and
// over plain HTTP they went out by writev (vecConn), not through a copy.
// A change in net/http that loses the path fails here, not silently.
func TestUploadPartsVectored(t *testing.T) {
	var parts [][]byte
	var whole []byte
	for i := range 300 {
		p := bytes.Repeat([]byte{byte(i)}, 1+(i*7919)%70000)
		parts = append(parts, p)
		whole = append(whole, p...)
	}
	want := sha256.Sum256(whole)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil || sha256.Sum256(b) != want || r.ContentLength != int64(len(whole)) {
			t.Errorf("server got %d bytes (Content-Length %d), want %d intact (err %v)", len(b), r.ContentLength, len(whole), err)
		}
		w.WriteHeader(http.StatusNoContent)
	})
	for _, tls := range []bool{false, true} {
		var srv *httptest.Server
		if tls {
			srv = httptest.NewTLSServer(handler)
		} else {
			srv = httptest.NewServer(handler)
		}
		c, err := New(Config{Server: srv.URL})
		if err != nil {
			t.Fatal(err)
		}
		if tls {
			c.hc.Transport.(*http.Transport).TLSClientConfig = srv.Client().Transport.(*http.Transport).TLSClientConfig
		}
		before := vectoredWrites.Load()
		for range 3 { // the second and third reuse the connection
			if err := c.UploadParts(t.Context(), parts); err != nil {
				t.Fatal(err)
			}
		}
		got := vectoredWrites.Load() - before
		if !tls && got != 3 {
			t.Errorf("plain HTTP: %d of 3 bodies went out by writev", got)
		}
		if tls && got != 0 {
			t.Errorf("TLS: %d bodies went by writev under the TLS layer", got)
		}
		srv.Close()
	}
}
