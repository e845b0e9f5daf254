package coordinator

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// Addrs are the addresses a running coordinator listens on, as bound: where
// the configuration asked for port 0, the port the kernel chose. Tests and
// gantry bench start coordinators on port 0 and read these back instead of
// reserving ports beforehand.
type Addrs struct {
	GRPC string `json:"grpc"`
	HTTP string `json:"http"`
	Raft string `json:"raft"`
	// NATS is the embedded NATS server's client address (host:port); empty
	// when the coordinator uses an existing NATS.
	NATS string `json:"nats,omitempty"`
	// NATSRoute is the embedded server's route address; empty when it does
	// not cluster.
	NATSRoute string `json:"nats_route,omitempty"`
	// CA is the CA certificate file the gRPC API's certificate is checked
	// against; empty without TLS.
	CA string `json:"ca,omitempty"`
}

// Addrs returns the bound addresses.
func (s *Server) Addrs() Addrs {
	return Addrs{GRPC: s.GRPCAddr(), HTTP: s.HTTPAddr(), Raft: s.RaftAddr(), NATS: s.NATSAddr(), NATSRoute: s.NATSRouteAddr(), CA: s.cfg.TLS.CAFile}
}

// GRPCAddr is the API's address.
func (s *Server) GRPCAddr() string { return s.grpcLis.Addr().String() }

// HTTPAddr is the health, metrics and hooks address.
func (s *Server) HTTPAddr() string { return s.httpLis.Addr().String() }

// RaftAddr is the Raft transport's address, the one peers are told.
func (s *Server) RaftAddr() string { return s.node.Addr() }

// NATSAddr is the embedded NATS server's client address (host:port), or ""
// when there is no embedded server.
func (s *Server) NATSAddr() string {
	srv := s.natsdRef.Load()
	if srv == nil || srv.Addr() == nil {
		return ""
	}
	return srv.Addr().String()
}

// NATSURL is the client URL of the embedded NATS server, or the configured one.
func (s *Server) NATSURL() string {
	if srv := s.natsdRef.Load(); srv != nil {
		return srv.ClientURL()
	}
	return s.cfg.NATS.URL
}

// NATSRouteAddr is the embedded server's route address (host:port), or ""
// when it does not cluster.
func (s *Server) NATSRouteAddr() string {
	srv := s.natsdRef.Load()
	if srv == nil || srv.ClusterAddr() == nil {
		return ""
	}
	return srv.ClusterAddr().String()
}

// NATSRouteURL is the embedded server's route URL, for other coordinators.
func (s *Server) NATSRouteURL() string {
	if a := s.NATSRouteAddr(); a != "" {
		return "nats://" + a
	}
	return ""
}

// WriteFile writes the addresses as JSON to path. The file appears whole
// (written aside, then renamed), so a reader polling for it never sees half.
func (a Addrs) WriteFile(path string) error {
	data, err := json.MarshalIndent(a, "", "  ")
	if err != nil {
		return fmt.Errorf("encode addresses: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".addrs-*")
	if err != nil {
		return fmt.Errorf("write addresses: %w", err)
	}
	_, err = tmp.Write(append(data, '\n'))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write addresses %s: %w", path, err)
	}
	return nil
}

// ReadAddrs reads a file written by Addrs.WriteFile.
func ReadAddrs(path string) (Addrs, error) {
	var a Addrs
	data, err := os.ReadFile(path)
	if err != nil {
		return a, fmt.Errorf("read addresses: %w", err)
	}
	if err := json.Unmarshal(data, &a); err != nil {
		return a, fmt.Errorf("read addresses %s: %w", path, err)
	}
	return a, nil
}
