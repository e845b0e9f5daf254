package main

import (
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
)

// devCAFile is where `gantry dev` records the CA of each API address it
// serves, so that the CLI speaks TLS to it with no flag:
// $XDG_CONFIG_HOME/gantry/dev-ca.json, {"127.0.0.1:7420": "/path/ca.pem"}.
func devCAFile() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "gantry", "dev-ca.json"), nil
}

// rememberDevCA records ca as the CA of the API at addr, dropping entries
// whose CA file is gone.
func rememberDevCA(addr, ca string) error {
	path, err := devCAFile()
	if err != nil {
		return err
	}
	cas := readDevCAs(path)
	for a, f := range cas {
		if _, err := os.Stat(f); err != nil {
			delete(cas, a)
		}
	}
	if abs, err := filepath.Abs(ca); err == nil {
		ca = abs
	}
	cas[addr] = ca
	data, err := json.MarshalIndent(cas, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func readDevCAs(path string) map[string]string {
	cas := map[string]string{}
	if data, err := os.ReadFile(path); err == nil {
		_ = json.Unmarshal(data, &cas)
	}
	return cas
}

// devCA is the CA gantry dev recorded for addr: the same port on a
// loopback address ("localhost:7420" is "127.0.0.1:7420"). "" when none.
func devCA(addr string) string {
	path, err := devCAFile()
	if err != nil {
		return ""
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	for a, ca := range readDevCAs(path) {
		h, p, err := net.SplitHostPort(a)
		if err != nil || p != port {
			continue
		}
		if h == host || (isLoopback(h) && isLoopback(host)) {
			if _, err := os.Stat(ca); errors.Is(err, os.ErrNotExist) {
				return ""
			}
			return ca
		}
	}
	return ""
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
