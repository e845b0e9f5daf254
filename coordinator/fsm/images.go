package fsm

import "encoding/json"

// decodeImages reads the "images" output of a deploy (a JSON object of
// repository -> reference); a malformed one keeps what was recorded.
func decodeImages(s string, old map[string]string) map[string]string {
	var m map[string]string
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return old
	}
	return m
}
