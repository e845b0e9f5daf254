package dispatch

import (
	"fmt"

	"github.com/gantryci/gantry/coordinator/fsm"
	"github.com/gantryci/gantry/coordinator/secret"
	"github.com/gantryci/gantry/coordinator/spec"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// UseKeyring sets the keyring that opens secrets at assignment. Without one,
// a task referring to a secret fails.
func (d *Dispatcher) UseKeyring(k *secret.Keyring) { d.keyring.Store(k) }

// secrets resolves the secrets a task refers to, for one attempt on one
// agent: the values travel only in that agent's assignment. A secret that
// does not exist, does not open, or whose scope excludes the task is an
// error naming it; the attempt then fails as a job failure (a retry would
// meet the same secret).
func (d *Dispatcher) secrets(t *gv1.TaskSpec, ref *gv1.TaskRef, jobName, agent string) (map[string][]byte, error) {
	names := spec.SecretRefs(t)
	if len(names) == 0 {
		return nil, nil
	}
	// The state skips such tasks at submit; this is the second lock.
	if d.fsm.JobUntrusted(ref.GetJobId()) {
		return nil, fmt.Errorf("secrets are not given to an untrusted change's build")
	}
	k := d.keyring.Load()
	out := make(map[string][]byte, len(names))
	for _, n := range names {
		sec, ok := d.fsm.Secret(n)
		if !ok {
			return nil, fmt.Errorf("secret %q: %w", n, fsm.ErrNotFound)
		}
		sc, err := secret.ParseScope(sec.GetScope())
		if err == nil {
			labels, _ := d.fleet.Labels(agent)
			err = sc.Allows(t.GetDeploy().GetApp(), jobName, labels)
		}
		if err != nil {
			return nil, fmt.Errorf("secret %q: %w", n, err)
		}
		v, err := k.Open(sec.GetName(), sec.GetKeyId(), sec.GetCiphertext())
		if err != nil {
			return nil, err
		}
		out[n] = v
	}
	return out, nil
}
