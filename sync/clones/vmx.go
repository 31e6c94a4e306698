package clones

import (
	"bytes"
	"strconv"
	"strings"
)

// SetDisplayName returns a VMware .vmx file with its displayName set to
// name, so that VMware shows a clone under its own name rather than the
// template's. A .vmx is lines of `key = "value"`; keys are case-insensitive.
// The displayName line is replaced where it is, or added at the end; every
// other byte is kept, line endings included.
func SetDisplayName(vmx []byte, name string) []byte {
	line := []byte(`displayName = ` + quoteVMX(name))
	var out []byte
	found := false
	rest := vmx
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, '\n')
		var cur, eol []byte
		if i < 0 {
			cur, rest = rest, nil
		} else {
			cur, eol, rest = rest[:i], rest[i:i+1], rest[i+1:]
		}
		body := bytes.TrimSuffix(cur, []byte("\r"))
		if !found && isDisplayName(body) {
			found = true
			out = append(out, line...)
			out = append(out, cur[len(body):]...) // keep a CR
		} else {
			out = append(out, cur...)
		}
		out = append(out, eol...)
	}
	if !found {
		if len(out) > 0 && out[len(out)-1] != '\n' {
			out = append(out, '\n')
		}
		out = append(out, line...)
		out = append(out, '\n')
	}
	return out
}

func isDisplayName(line []byte) bool {
	key, _, ok := bytes.Cut(line, []byte("="))
	return ok && strings.EqualFold(string(bytes.TrimSpace(key)), "displayName")
}

// quoteVMX quotes a value the way VMware writes it: in double quotes, with
// the characters VMware escapes written as |XX hex.
func quoteVMX(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '"' || c == '|' || c < 0x20 {
			b.WriteString("|" + strings.ToUpper(strconv.FormatUint(uint64(c)|0x100, 16)[1:]))
			continue
		}
		b.WriteByte(c)
	}
	b.WriteByte('"')
	return b.String()
}
