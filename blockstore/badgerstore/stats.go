package badgerstore

// Stats are counters of a store's work.
type Stats struct {
	// DirectWrites says the packs are written with O_DIRECT (asked for,
	// and taken by the file system), past the page cache.
	DirectWrites bool
	// StagedBytes counts the payload bytes an O_DIRECT write had to copy
	// into an aligned buffer first, because they did not lie on a 4 KiB
	// boundary where they were.
	StagedBytes int64
	// DirectReadBytes counts the payload bytes read with O_DIRECT
	// (Config.DirectReads), past the page cache.
	DirectReadBytes int64
}

// Stats returns the store's counters.
func (s *Store) Stats() Stats {
	s.packs.mu.Lock()
	direct := s.packs.direct
	s.packs.mu.Unlock()
	return Stats{DirectWrites: direct, StagedBytes: s.packs.staged.Load(), DirectReadBytes: s.packs.directRead.Load()}
}
