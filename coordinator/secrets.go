package coordinator

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gantryci/gantry/coordinator/api"
	"github.com/gantryci/gantry/coordinator/project"
	"github.com/gantryci/gantry/coordinator/secret"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// secretKeysFile is the keyring's default place in the data directory.
const secretKeysFile = "secret-keys"

// keyringPath is the keyring file this coordinator uses, "" for none.
func (c Config) keyringPath() string {
	if c.SecretKeys != "" {
		return c.SecretKeys
	}
	p := filepath.Join(c.DataDir, secretKeysFile)
	if c.GenerateSecretKeys {
		return p
	}
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return ""
}

// loadKeyring reads (or, for gantry dev, creates) the keyring.
func (s *Server) loadKeyring() error {
	path := s.cfg.keyringPath()
	if path == "" {
		s.log.Warn("no secret keyring: secrets cannot be stored or used (--secret-keys)")
		return nil
	}
	var (
		k   *secret.Keyring
		err error
	)
	if s.cfg.GenerateSecretKeys && s.cfg.SecretKeys == "" {
		k, err = secret.Create(path, false)
	} else {
		k, err = secret.Load(path)
	}
	if err != nil {
		return fmt.Errorf("secret keys: %w", err)
	}
	s.useKeyring(k, path)
	return nil
}

func (s *Server) useKeyring(k *secret.Keyring, path string) {
	s.keyring.Store(k)
	s.disp.UseKeyring(k)
	s.api.UseKeyring(k)
	if st, err := os.Stat(path); err == nil {
		s.keyringMu.Lock()
		s.keyringMod = st.ModTime()
		s.keyringMu.Unlock()
	}
	s.log.Info("secret keyring loaded", zap.String("file", path), zap.String("primary", k.Primary()))
}

// keyringLoop runs on every node: it reloads the keyring file when it
// changes, so that whichever node leads next opens secrets sealed with a
// new key.
func (s *Server) keyringLoop(ctx context.Context) {
	tick := time.NewTicker(keyringPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		s.reloadKeyring()
	}
}

// keyringPoll is how often the keyring file is checked for a change.
const keyringPoll = 5 * time.Second

// rekeyLoop runs on the leader: it re-encrypts every secret not sealed
// with the primary key, so rotating a key is "put a new key first in every
// coordinator's file".
func (s *Server) rekeyLoop(ctx context.Context) {
	tick := time.NewTicker(keyringPoll)
	defer tick.Stop()
	for {
		if err := s.rekey(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("re-encrypt secrets", zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (s *Server) reloadKeyring() {
	path := s.cfg.keyringPath()
	if path == "" {
		return
	}
	st, err := os.Stat(path)
	if err != nil || st.ModTime().Equal(s.keyringModTime()) {
		return
	}
	k, err := secret.Load(path)
	if err != nil {
		s.log.Warn("reload secret keyring", zap.Error(err))
		return
	}
	s.useKeyring(k, path)
}

// rekey re-encrypts the secrets sealed with an older key: named secrets,
// and the webhook secrets of projects and applications.
func (s *Server) rekey(ctx context.Context) error {
	k := s.keyring.Load()
	if k == nil {
		return nil
	}
	var cmds []*gv1.Command
	var errs []error
	at := timestamppb.Now()
	// reseal opens a value sealed under name with an older key and seals
	// it with the primary; a value that does not open is skipped.
	reseal := func(name, keyID string, sealed []byte, cmd func(id string, ct []byte) *gv1.Command) error {
		v, err := k.Open(name, keyID, sealed)
		if err != nil {
			errs = append(errs, err)
			return nil
		}
		id, ct, err := k.Seal(name, v)
		if err != nil {
			return err
		}
		c := cmd(id, ct)
		c.At = at
		cmds = append(cmds, c)
		return nil
	}
	for _, sec := range s.fsm.SecretsNotSealedWith(k.Primary()) {
		if err := reseal(sec.GetName(), sec.GetKeyId(), sec.GetCiphertext(), func(id string, ct []byte) *gv1.Command {
			return &gv1.Command{Cmd: &gv1.Command_SetSecret{SetSecret: &gv1.SetSecretCommand{
				Secret: &gv1.Secret{Name: sec.GetName(), Scope: sec.GetScope(), KeyId: id, Ciphertext: ct},
			}}}
		}); err != nil {
			return err
		}
	}
	for _, p := range s.fsm.ProjectsNotSealedWith(k.Primary()) {
		if err := reseal(project.WebhookSecretName(p.GetSpec().GetName()), p.GetWebhookKeyId(), p.GetWebhookSecret(), func(id string, ct []byte) *gv1.Command {
			return &gv1.Command{Cmd: &gv1.Command_ResealWebhook{ResealWebhook: &gv1.ResealWebhookCommand{Project: p.GetSpec().GetName(), WebhookSecret: ct, WebhookKeyId: id}}}
		}); err != nil {
			return err
		}
	}
	for _, a := range s.fsm.AppsNotSealedWith(k.Primary()) {
		if err := reseal(api.AppWebhookSecretName(a.GetSpec().GetName()), a.GetWebhookKeyId(), a.GetWebhookSecret(), func(id string, ct []byte) *gv1.Command {
			return &gv1.Command{Cmd: &gv1.Command_ResealWebhook{ResealWebhook: &gv1.ResealWebhookCommand{App: a.GetSpec().GetName(), WebhookSecret: ct, WebhookKeyId: id}}}
		}); err != nil {
			return err
		}
	}
	if len(cmds) > 0 {
		if _, err := s.prop.Propose(ctx, cmds...); err != nil {
			return err
		}
		s.log.Info("secrets re-encrypted", zap.Int("secrets", len(cmds)), zap.String("key", k.Primary()))
	}
	return errors.Join(errs...)
}

func (s *Server) keyringModTime() time.Time {
	s.keyringMu.Lock()
	defer s.keyringMu.Unlock()
	return s.keyringMod
}
