package multicast

import "maps"

// SessionsStats counts the sessions a Sessions runner sent.
type SessionsStats struct {
	// Sessions counts sessions by state: "done" and "failed" ones since
	// the runner started, "queued" and "sending" ones now.
	Sessions map[string]int
	// Sent sums the finished sessions' counters and those of the session
	// sending now, so far.
	Sent SenderStats
	// Sending is the session sending now, if one is.
	Sending *SendingProgress
}

// SendingProgress is how far the session sending now has gone.
type SendingProgress struct {
	Session  uint32
	Template string
	Version  uint64
	// Blocks counts the version's blocks; Sent the session's counters so
	// far (Sent.Blocks: the distinct blocks sent).
	Blocks int
	Sent   SenderStats
}

// Stats returns the counts so far.
func (s *Sessions) Stats() SessionsStats {
	s.mu.Lock()
	st := SessionsStats{Sessions: maps.Clone(s.ended), Sent: s.sent}
	cur := s.cur
	for _, sess := range s.list {
		if sess.State == "queued" || sess.State == "sending" {
			st.Sessions[sess.State]++
		}
		if cur != nil && sess.ID == cur.Session() {
			st.Sending = &SendingProgress{Session: sess.ID, Template: sess.Template, Version: sess.Version, Blocks: len(cur.ids)}
		}
	}
	s.mu.Unlock()
	if cur != nil {
		now := cur.Stats()
		st.Sent.add(now)
		if st.Sending != nil {
			st.Sending.Sent = now
		}
	}
	return st
}

// add sums b's counters into a (not its rate or timings).
func (a *SenderStats) add(b SenderStats) {
	a.Bytes += b.Bytes
	a.Packets += b.Packets
	a.Sends += b.Sends
	a.FreshBytes += b.FreshBytes
	a.RepairBytes += b.RepairBytes
	a.CatchUpBytes += b.CatchUpBytes
	a.Missed += b.Missed
	a.NeededBytes += b.NeededBytes
	a.Blocks += b.Blocks
	a.Receivers += b.Receivers
	a.Done += b.Done
	a.Left += b.Left
	a.Late += b.Late
	a.Dropped += b.Dropped
}

// JoinerStats counts what a workstation's Joiner received.
type JoinerStats struct {
	// Sessions counts the sessions joined by outcome: "done" and
	// "failed" since the joiner started, "receiving" now.
	Sessions map[string]int
	// Received sums the counters of the sessions received (whatever
	// their outcome); a session being received counts when it ends.
	Received ReceiverStats
}

// Stats returns the counts so far.
func (j *Joiner) Stats() JoinerStats {
	j.mu.Lock()
	defer j.mu.Unlock()
	st := JoinerStats{Sessions: maps.Clone(j.ended), Received: j.received}
	for _, jd := range j.seen {
		if jd.prog.State == "receiving" {
			st.Sessions["receiving"]++
		}
	}
	return st
}

// add sums b's counters into a (not its timings, flags or loss rate).
func (a *ReceiverStats) add(b ReceiverStats) {
	a.Needed += b.Needed
	a.Multicast += b.Multicast
	a.Unicast += b.Unicast
	a.Bytes += b.Bytes
	a.Packets += b.Packets
	a.Dropped += b.Dropped
	a.Duplicates += b.Duplicates
	a.Reads += b.Reads
	a.Corrupt += b.Corrupt
	a.Repaired += b.Repaired
	a.Nacks += b.Nacks
	a.Stores += b.Stores
	a.Stalls += b.Stalls
}
