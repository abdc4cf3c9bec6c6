//go:build !linux

package main

import "os"

// noEcho cannot turn echo off here; secrets are better passed by flag.
func noEcho(*os.File) func() { return func() {} }
