package main

import (
	"strings"
	"testing"
	"time"

	"github.com/dvfs-project/dvfs/sync/api"
)

// A token that expires within days is a warning saying to log in again.
func TestDoctorTokenExpiry(t *testing.T) {
	g := &globals{server: "https://dvfs.lab.example:7420"}
	for _, tc := range []struct {
		expires time.Time
		verdict string
	}{
		{time.Time{}, verdictOK},
		{time.Now().Add(30 * 24 * time.Hour), verdictOK},
		{time.Now().Add(time.Hour), verdictWarn},
	} {
		f := serverFinding(g, api.Principal{Name: "alice", Role: api.RoleUser, Expires: tc.expires}, nil)
		if f.Verdict != tc.verdict || tc.verdict == verdictWarn && !strings.Contains(f.Fix, "dvfs login") {
			t.Errorf("expires %v: %+v, want %s", tc.expires, f, tc.verdict)
		}
	}
}
