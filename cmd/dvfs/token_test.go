package main

import (
	"testing"
	"time"
)

func TestParseLifetime(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"never", 0, true},
		{"0", 0, true},
		{"12h", 12 * time.Hour, true},
		{"90d", 90 * 24 * time.Hour, true},
		{"90m", 90 * time.Minute, true},
		{"3660d", 3660 * 24 * time.Hour, true},
		{"3661d", 0, false},
		{"0d", 0, false},
		{"-1h", 0, false},
		{"30s", 0, false},
		{"d", 0, false},
		{"1y", 0, false},
		{"", 0, false},
	} {
		got, err := parseLifetime(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseLifetime(%q) = %v, %v; want %v, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}
