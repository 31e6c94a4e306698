package main

import "errors"

// errServeHere is why dvfs serve refuses to run on Windows: the server is
// built and tested on Linux only (workstations run on Windows).
var errServeHere = errors.New("dvfs serve runs on Linux; Windows runs the workstation side (dvfs mount, clone, status)")

// openFileLimit: Windows has no such limit on sockets and files.
func openFileLimit() (uint64, bool) { return 0, false }
