//go:build linux

// Command bench is dvfs's benchmark harness. Each subcommand measures dvfs
// against a reference measured in the same run and prints a table of
// numbers and ratios; nothing here asserts a time.
//
//	go run ./bench publish [-size 2GiB] [-dir /var/tmp] [-runs 3]
//	go run ./bench fio [-size 2GiB] [-dir /var/tmp] [-runtime 10s]
//	go run ./bench mem [-size 20GiB] [-dir /var/tmp]
//	go run ./bench writeback [-size 1GiB] [-rate 20] [-duration 20s]
//	go run ./bench cow [-size 2GiB] [-write 32MiB] [-baseline REV]
//	go run ./bench multicast [-size 2GiB] [-receivers 1,4,8] [-tools dvfs,uftp,udpcast] [-slow]
//	go run ./bench sparse [-size 20GiB] [-data 64MiB] [-write 4MiB] [-dir /var/tmp]
//	go run ./bench s3 [-size 1GiB] [-dir /var/tmp] [-runs 2]
//	go run ./bench storm [-n 1,4] [-size 1GiB] [-read 128MiB] [-write 16MiB] [-targets ...] [-rates 1gbit] [-smoke] [-out DIR]
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "publish":
		err = benchPublish(os.Args[2:])
	case "fio":
		err = benchFio(os.Args[2:])
	case "mem":
		err = benchMem(os.Args[2:])
	case "writeback":
		err = benchWriteback(os.Args[2:])
	case "cow":
		err = benchCow(os.Args[2:])
	case "multicast":
		err = benchMulticast(os.Args[2:])
	case "sparse":
		err = benchSparse(os.Args[2:])
	case "s3":
		err = benchS3(os.Args[2:])
	case "storm":
		err = benchStorm(os.Args[2:])
	case "storm-work": // storm's per-workstation process
		err = stormWorker(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: go run ./bench publish|fio|mem|writeback|cow|multicast|sparse|s3|storm [flags]")
	os.Exit(2)
}
