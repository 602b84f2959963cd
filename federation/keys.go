package federation

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/hashicorp/memberlist"
)

// ParseKeys reads a gossip keyring file: one base64 key (16, 24 or 32
// bytes, as `head -c 32 /dev/urandom | base64` makes) per line, the first
// one used to send, every one accepted; blank lines and lines starting with
// # are skipped. To rotate: add the new key second, roll it out, move it
// first, roll out, remove the old one.
func ParseKeys(data []byte) ([][]byte, error) {
	var keys [][]byte
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, err := base64.StdEncoding.DecodeString(line)
		if err != nil {
			return nil, fmt.Errorf("federation: key on line %d is not base64: %w", n, err)
		}
		if err := memberlist.ValidateKey(k); err != nil {
			return nil, fmt.Errorf("federation: key on line %d is %d bytes, want 16, 24 or 32", n, len(k))
		}
		keys = append(keys, k)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("federation: keys: %w", err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("federation: no key in the keyring file")
	}
	return keys, nil
}
