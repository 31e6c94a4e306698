package fs

// DefaultReadAhead is how far the kernel reads ahead of a sequential
// reader of a mount, in either adapter (SetReadAhead); dvfs mount
// --readahead sets another.
//
// The kernel gives a FUSE mount 128 KiB of readahead whatever the daemon
// asks for at init, so a program reading a template 1 MiB at a time (dd,
// fio, a VM copying its disk) waited for each request in turn and the
// daemon worked on one request at a time, on one of the two cores: 0.54
// of a go-fuse loopback's sequential reads. With more, the kernel sends
// the next request while the reader consumes the last, and the daemon
// serves them in parallel: a 2 GiB template read with dd bs=1M took
// 1.7-2.1 s instead of 2.7-3.4 s (the loopback: 1.4-2.0 s), about the
// same with 1, 4 or 16 MiB.
//
// 1 MiB and not 4: readahead also runs past the end of every run a
// program reads, and through a cold cache each block it reaches is
// fetched over the server's link. In the restore storm (bench storm,
// 100 Mbit/s, runs of 256 KiB-8 MiB) a cold workstation fetched 36-38
// MiB for its 32 MiB of reads instead of 43 MiB, and at N=10 the
// workloads were done after 21-26 s instead of 29-34 s; with warm caches
// the mounts spent 0.40 s of CPU each instead of 0.46-0.56 s, serving
// fewer pages no one read. A cold 1 GiB dd bs=1M took 4.0-4.3 s with
// 1 MiB and 4.1 s with 4 MiB (the kernel's 128 KiB: 4.9-5.5 s).
const DefaultReadAhead = 1 << 20
