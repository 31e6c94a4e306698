package main

import (
	"fmt"
	"os"
	"path/filepath"
)

// checkFUSE: the kernel's FUSE device, and fusermount3 for a mount run
// by a user.
func checkFUSE() finding {
	f := finding{Check: "fuse"}
	const dev = "/dev/fuse"
	fi, err := os.Stat(dev)
	if err != nil {
		f.Verdict, f.Detail, f.Fix = verdictFail, fmt.Sprintf("%s: %v", dev, err), "load the module (modprobe fuse) and install fuse3 (apt-get install fuse3)"
		return f
	}
	if fi.Mode()&os.ModeCharDevice == 0 {
		f.Verdict, f.Detail, f.Fix = verdictFail, dev+" is not a character device", "remove it and load the module (modprobe fuse), or reboot"
		return f
	}
	dv, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		f.Verdict, f.Detail, f.Fix = verdictFail, fmt.Sprintf("cannot open %s: %v", dev, err), "make it 0666 (it is, as installed by fuse3) or run the mount as root"
		return f
	}
	dv.Close()
	f.Verdict, f.Detail = verdictOK, dev+" opens"
	if os.Geteuid() != 0 {
		if _, err := findFusermount(); err != nil {
			f.Verdict, f.Detail, f.Fix = verdictFail, "fusermount3 not found: a mount run by a user needs it", "apt-get install fuse3"
		}
	}
	return f
}

func findFusermount() (string, error) {
	for _, dir := range filepath.SplitList(os.Getenv("PATH") + ":/usr/bin:/bin") {
		p := filepath.Join(dir, "fusermount3")
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	return "", os.ErrNotExist
}
