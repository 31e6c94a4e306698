package repo

import (
	"encoding/binary"
	"fmt"
)

// Metadata layout. Every template's keys share the prefix "tpl/NAME/".
//
//	tpl/NAME/next         next version number (8 bytes big-endian); never
//	                      reset, so a version number is never reused
//	tpl/NAME/v/VVVV...    the signed manifest of a version
//	tpl/NAME/i/VVVV...    the JSON VersionInfo of a version (small: listing
//	                      reads only these)
//	tok/HASH              a token record (see tokens.go)
const prefixTemplates = "tpl/"

func templatePrefix(name string) string { return prefixTemplates + name + "/" }
func nextKey(name string) string        { return templatePrefix(name) + "next" }
func manifestKey(name string, v uint64) string {
	return fmt.Sprintf("%sv/%020d", templatePrefix(name), v)
}
func infoKey(name string, v uint64) string {
	return fmt.Sprintf("%si/%020d", templatePrefix(name), v)
}

func encodeUint(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func decodeUint(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("repo: counter of %d bytes", len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}
