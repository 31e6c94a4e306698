//go:build !linux

package main

// defaultAdapter elsewhere is cgofuse (WinFsp on Windows).
const defaultAdapter = "cgofuse"
