//go:build linux && cgo && fuse3

package cgofuse

import (
	"testing"
	"time"

	"github.com/winfsp/cgofuse/fuse"

	"github.com/dvfs-project/dvfs/fs"
)

// What WinFsp shows as a file's times: LastWriteTime from st_mtim,
// LastAccessTime from st_atim, ChangeTime from st_ctim, and CreationTime
// from st_birthtim, which must not be left at zero (1970).
func TestFillStatTimes(t *testing.T) {
	m, a, c := time.Unix(1700000000, 5), time.Unix(1700000100, 6), time.Unix(1700000200, 7)
	var st fuse.Stat_t
	fillStat(&st, fs.Attr{MTime: m, ATime: a, CTime: c})
	for _, tc := range []struct {
		name      string
		got, want time.Time
	}{{"mtime", st.Mtim.Time(), m}, {"atime", st.Atim.Time(), a}, {"ctime", st.Ctim.Time(), c}, {"birth time", st.Birthtim.Time(), m}} {
		if !tc.got.Equal(tc.want) {
			t.Errorf("%s = %v, want %v", tc.name, tc.got, tc.want)
		}
	}
}
