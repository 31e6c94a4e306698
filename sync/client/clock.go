package client

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/dvfs-project/dvfs/sync/api"
)

// ServerClock asks the server for its time (the Date header of an answer,
// to the second) and returns how far this machine's clock is ahead of
// it, taking the server's time as of the middle of the round trip; a
// skew within a second is none.
func (c *Client) ServerClock(ctx context.Context) (skew time.Duration, err error) {
	start := time.Now()
	resp, err := c.do(ctx, http.MethodGet, c.url(api.PathPubKey), nil)
	if err != nil {
		return 0, err
	}
	end := time.Now()
	resp.Body.Close()
	date, err := http.ParseTime(resp.Header.Get("Date"))
	if err != nil {
		return 0, errors.New("the server's answer has no Date")
	}
	mid := start.Add(end.Sub(start) / 2)
	// Date is truncated to the second: the server's clock read between
	// date and date+1s.
	skew = mid.Sub(date.Add(500 * time.Millisecond))
	if skew.Abs() < time.Second {
		skew = 0
	}
	return skew, nil
}
