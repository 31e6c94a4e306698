package repo

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// Metadata layout. Every template's keys share the prefix "tpl/NAME/".
//
//	tpl/NAME/next         next version number (8 bytes big-endian); never
//	                      reset, so a version number is never reused
//	tpl/NAME/v/VVVV...    the signed manifest of a version
//	tpl/NAME/i/VVVV...    the JSON VersionInfo of a version (small: listing
//	                      reads only these)
//	tok/HASH              a token record (see tokens.go)
//	acc/templates         revisions of the access sets (access.go): a
//	acc/o/OWNER           random value, new at every commit that grows
//	acc/g/GROUP           the set
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

// A metadata key's kinds, parsed by its place in the path, never by
// searching it: names are free to be "v", "g", "info" or "s".
const (
	keyOther       = iota
	keyTemplateMan // tpl/NAME/v/VVVV
	keyCloneInfo   // cln/OWNER/NAME/info
	keyCloneGen    // cln/OWNER/NAME/g/GGGG
)

// keyKind says what key is, and for clone keys whose.
func keyKind(key string) (kind int, owner string) {
	if rest, ok := strings.CutPrefix(key, prefixTemplates); ok {
		if p := strings.Split(rest, "/"); len(p) == 3 && p[1] == "v" {
			return keyTemplateMan, ""
		}
		return keyOther, ""
	}
	if rest, ok := strings.CutPrefix(key, prefixClones); ok {
		p := strings.Split(rest, "/")
		switch {
		case len(p) == 3 && p[2] == "info":
			return keyCloneInfo, p[0]
		case len(p) == 4 && p[2] == "g":
			return keyCloneGen, p[0]
		}
	}
	return keyOther, ""
}
